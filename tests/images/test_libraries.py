"""The shared-library check on real ELF files compiled here (gcc, as scripts/setup.sh installs)."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from daskbox.images.libraries import (
    describe_missing,
    elf_files_in_tar,
    missing_libraries,
    tar_paths,
)

LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib")


def compiled(tmp_path: Path, *flags: str) -> bytes:
    source = tmp_path / "ext.c"
    source.write_text("#include <omp.h>\nint threads(void) { return omp_get_max_threads(); }\n")
    output = tmp_path / "ext.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-fopenmp", *flags, "-o", str(output),
                    str(source)], check=True)  # fmt: skip
    return output.read_bytes()


def layer(files: dict[str, bytes]) -> tarfile.TarFile:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return tarfile.open(fileobj=buffer)


def test_a_missing_openmp_runtime_is_named_with_its_debian_package(tmp_path):
    ext = compiled(tmp_path)
    with layer({"opt/venv/lib/site-packages/omp/ext.so": ext}) as archive:
        elves = list(elf_files_in_tar(archive))
    assert [e.path for e in elves] == ["/opt/venv/lib/site-packages/omp/ext.so"]
    assert "libgomp.so.1" in elves[0].needed
    system = {"/usr/lib/x86_64-linux-gnu/libc.so.6"}
    missing = missing_libraries(elves, system, LIBRARY_DIRS)
    assert [(m.soname, m.package) for m in missing] == [("libgomp.so.1", "libgomp1")]
    message = describe_missing(missing, "linux/amd64")
    assert message == (
        "the linux/amd64 image cannot load 1 shared library: libgomp.so.1 (needed by "
        '/opt/venv/lib/site-packages/omp/ext.so): add "libgomp1" to [tool.daskbox] apt-packages'
    )
    # With libgomp1 installed (its file in the image's library folder) nothing is missing.
    assert missing_libraries(elves, system | {"/usr/lib/x86_64-linux-gnu/libgomp.so.1"},
                             LIBRARY_DIRS) == []  # fmt: skip


def test_a_library_bundled_next_to_the_extension_is_found_through_its_runpath(tmp_path):
    """auditwheel's layout: the library in <pkg>.libs, found through RUNPATH $ORIGIN/..."""
    ext = compiled(tmp_path, "-Wl,-rpath,$ORIGIN/../omp.libs", "-Wl,--enable-new-dtags")
    files = {"opt/venv/site/omp/ext.so": ext, "opt/venv/site/omp.libs/libgomp.so.1": b"x" * 80}
    with layer(files) as archive:
        elves = list(elf_files_in_tar(archive))
    with layer(files) as archive:
        present = tar_paths(archive)
    assert elves[0].search == ("/opt/venv/site/omp.libs",)
    assert missing_libraries(elves, present, LIBRARY_DIRS) == []


@pytest.mark.parametrize("data", [b"not an elf file at all, but long enough to be read" * 2])
def test_files_that_are_not_elf_are_skipped(data):
    with layer({"opt/venv/README": data}) as archive:
        assert list(elf_files_in_tar(archive)) == []


def test_a_layer_is_scanned_once_and_read_back_the_same(tmp_path):
    from daskbox.images.libraries import scan_layer

    path = tmp_path / "venv-layer.tar"
    with tarfile.open(path, "w") as archive:
        data = compiled(tmp_path)
        info = tarfile.TarInfo("opt/venv/omp/ext.so")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    first = scan_layer(path)
    assert (tmp_path / "venv-layer.tar.scan.json").is_file()
    assert first.paths == {"/opt/venv/omp/ext.so"} and "libgomp.so.1" in first.elves[0].needed
    assert scan_layer(path) == first
