"""The shared-library check on real ELF files compiled here (gcc, as scripts/setup.sh installs).

The same resolver against the real loader, on real wheels: tests/images/test_loader_differential.py.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from daskbox.errors import ConfigError
from daskbox.images.libraries import (
    ElfFile,
    Loader,
    MissingLibrary,
    Verdict,
    describe_missing,
    describe_warnings,
    elf_files_in_tar,
    missing_libraries,
    scan_layer,
    tar_paths,
)
from daskbox.images.settings import load_settings

SYSTEM = ("/usr/local/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib")
BASE = {"/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6"}
SITE = "opt/venv/lib/python3.11/site-packages"


def compiled(tmp_path: Path, *flags: str) -> bytes:
    source = tmp_path / "ext.c"
    source.write_text("#include <omp.h>\nint threads(void) { return omp_get_max_threads(); }\n")
    output = tmp_path / "ext.so"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-fopenmp", *flags, "-o", str(output), str(source)], check=True
    )
    return output.read_bytes()


def library(tmp_path: Path, soname: str, *needs: str, flags: tuple[str, ...] = ()) -> bytes:
    """A shared object named ``soname`` whose DT_NEEDED are ``needs`` (stubs linked by soname)."""
    source = tmp_path / "stub.c"
    source.write_text(f"int {soname.replace('.', '_').replace('-', '_')}(void) {{ return 1; }}\n")
    links: list[str] = []
    for needed in needs:
        stub = tmp_path / f"stub-{needed}"
        subprocess.run(
            ["gcc", "-shared", "-fPIC", f"-Wl,-soname,{needed}", "-o", str(stub), str(source)],
            check=True,
        )
        links.append(str(stub))
    output = tmp_path / f"built-{soname}"
    subprocess.run(
        [
            "gcc",
            "-shared",
            "-fPIC",
            f"-Wl,-soname,{soname}",
            *flags,
            "-o",
            str(output),
            str(source),
            "-Wl,--no-as-needed",
            *links,
        ],
        check=True,
    )
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


def loader_of(files: dict[str, bytes], base: set[str] = BASE) -> Loader:
    with layer(files) as archive:
        elves = list(elf_files_in_tar(archive))
    with layer(files) as archive:
        present = tar_paths(archive)
    return Loader.over("linux/amd64", elves, present | base, SYSTEM, ("libc.so.6", "libm.so.6"))


def test_a_missing_openmp_runtime_is_named_with_its_debian_package(tmp_path):
    ext = compiled(tmp_path)
    with layer({f"{SITE}/omp/ext.so": ext}) as archive:
        elves = list(elf_files_in_tar(archive))
    assert [e.path for e in elves] == [f"/{SITE}/omp/ext.so"]
    assert "libgomp.so.1" in elves[0].needed and elves[0].kind == "shared"
    missing = missing_libraries(Loader.over("linux/amd64", elves, BASE, SYSTEM))
    assert [(m.soname, m.package) for m in missing] == [("libgomp.so.1", "libgomp1")]
    assert describe_missing(missing, "linux/amd64") == (
        f"the linux/amd64 image cannot load 1 shared library: libgomp.so.1 (needed by /{SITE}/"
        'omp/ext.so): add "libgomp1" to [tool.daskbox] apt-packages, or if the image does load '
        'them, set [tool.daskbox] ignore-missing-libraries = ["libgomp.so.1"]'
    )
    # With libgomp1 installed (its file in the image's library folder) nothing is missing.
    installed = BASE | {"/usr/lib/x86_64-linux-gnu/libgomp.so.1"}
    assert missing_libraries(Loader.over("linux/amd64", elves, installed, SYSTEM)) == []
    # The user's word that it loads.
    assert (
        missing_libraries(Loader.over("linux/amd64", elves, BASE, SYSTEM), ["libgomp.so.1"]) == []
    )


def test_a_library_bundled_next_to_the_extension_is_found_through_its_runpath(tmp_path):
    """auditwheel's layout: the library in <pkg>.libs, found through RUNPATH $ORIGIN/..."""
    ext = compiled(tmp_path, "-Wl,-rpath,$ORIGIN/../omp.libs", "-Wl,--enable-new-dtags")
    files = {f"{SITE}/omp/ext.so": ext, f"{SITE}/omp.libs/libgomp.so.1": b"x" * 80}
    loader = loader_of(files)
    assert loader.objects[f"/{SITE}/omp/ext.so"].runpath == ("$ORIGIN/../omp.libs",)
    assert missing_libraries(loader) == []


def numpy_126_layout(tmp_path: Path) -> dict[str, bytes]:
    """numpy 1.26.4's wheel in small: the extension finds numpy.libs through its DT_RPATH; the
    bundled openblas (no RPATH, no RUNPATH) needs the bundled, hashed libgfortran, and that
    the hashed libquadmath: both found through the *extension's* DT_RPATH, inherited."""
    gfortran, quadmath = "libgfortran-040039e1.so.5.0.0", "libquadmath-96973f99.so.0.0.0"
    blas = "libopenblas64_p-r0-0cf96a72.3.23.dev.so"
    return {
        f"{SITE}/numpy/core/_multiarray_umath.so": library(
            tmp_path,
            "_multiarray_umath.so",
            blas,
            flags=("-Wl,-rpath,$ORIGIN/../../numpy.libs", "-Wl,--disable-new-dtags"),
        ),
        f"{SITE}/numpy.libs/{blas}": library(tmp_path, blas, gfortran),
        f"{SITE}/numpy.libs/{gfortran}": library(tmp_path, gfortran, quadmath),
        f"{SITE}/numpy.libs/{quadmath}": library(tmp_path, quadmath),
    }


def test_numpy_1_26s_bundled_libraries_are_found_through_the_inherited_rpath(tmp_path):
    """The issue's case: the old check called libgfortran and libquadmath missing."""
    loader = loader_of(numpy_126_layout(tmp_path))
    module = f"/{SITE}/numpy/core/_multiarray_umath.so"
    assert loader.objects[module].rpath == ("$ORIGIN/../../numpy.libs",)
    assert loader.missing(module) == []
    # dlopened alone, openblas does not find libgfortran: as the real loader says. Nothing
    # loads it alone (the extension does), so the build's check passes.
    blas = f"/{SITE}/numpy.libs/libopenblas64_p-r0-0cf96a72.3.23.dev.so"
    assert [m.soname for m in loader.missing(blas)] == ["libgfortran-040039e1.so.5.0.0"]
    assert missing_libraries(loader) == []


def test_a_runpath_is_not_inherited_and_hides_the_objects_own_rpath(tmp_path):
    """DT_RUNPATH serves the object's own DT_NEEDED only; with it, DT_RPATH counts for nothing."""
    files = {
        f"{SITE}/pkg/ext.so": library(
            tmp_path,
            "ext.so",
            "liba.so.1",
            flags=("-Wl,-rpath,$ORIGIN/../pkg.libs", "-Wl,--enable-new-dtags"),
        ),
        f"{SITE}/pkg.libs/liba.so.1": library(tmp_path, "liba.so.1", "libb.so.1"),
        f"{SITE}/pkg.libs/libb.so.1": library(tmp_path, "libb.so.1"),
    }
    loader = loader_of(files)
    missing = loader.missing(f"/{SITE}/pkg/ext.so")
    assert [(m.soname, m.needed_by) for m in missing] == [
        ("libb.so.1", f"/{SITE}/pkg.libs/liba.so.1")
    ]
    # The same folder as DT_RPATH as well: ignored, since the object has a DT_RUNPATH.
    both = ElfFile(
        f"/{SITE}/pkg/ext.so",
        needed=("liba.so.1",),
        runpath=("/nowhere",),
        rpath=("$ORIGIN/../pkg.libs",),
    )
    objects = {**loader.objects, both.path: both}
    again = Loader.over("linux/amd64", objects.values(), loader.files, SYSTEM)
    assert [m.soname for m in again.missing(both.path)] == ["liba.so.1"]


def test_a_soname_already_loaded_satisfies_a_later_dependency(tmp_path):
    """liba is loaded through the extension's RUNPATH; libc (no search path) needs it by its
    soname and gets the loaded object, as ld.so matches DT_NEEDED against loaded sonames."""
    files = {
        f"{SITE}/pkg/ext.so": library(
            tmp_path,
            "ext.so",
            "liba-1234abcd.so.1",
            "libc-x.so.1",
            flags=("-Wl,-rpath,$ORIGIN/../pkg.libs", "-Wl,--enable-new-dtags"),
        ),
        f"{SITE}/pkg.libs/liba-1234abcd.so.1": library(tmp_path, "liba-1234abcd.so.1"),
        f"{SITE}/pkg.libs/libc-x.so.1": library(tmp_path, "libc-x.so.1", "liba-1234abcd.so.1"),
    }
    loader = loader_of(files)
    assert loader.missing(f"/{SITE}/pkg/ext.so") == []
    assert [m.soname for m in loader.missing(f"/{SITE}/pkg.libs/libc-x.so.1")] == [
        "liba-1234abcd.so.1"
    ]


def test_a_candidate_of_another_elf_class_is_skipped():
    module = ElfFile("/site/pkg/ext.so", needed=("libz.so.1",), runpath=("$ORIGIN",))
    wrong = ElfFile("/site/pkg/libz.so.1", elf_class=32, machine="EM_386")
    files = {"/usr/lib/x86_64-linux-gnu/libz.so.1"}
    loader = Loader.over("linux/amd64", [module, wrong], files, SYSTEM)
    assert loader.missing(module.path) == []
    assert loader.load(module.path)[0]["libz.so.1"] == "/usr/lib/x86_64-linux-gnu/libz.so.1"
    alone = Loader.over("linux/amd64", [module, wrong], set(), SYSTEM)
    assert [m.soname for m in alone.missing(module.path)] == ["libz.so.1"]
    # And a file of another platform is not checked at all.
    assert missing_libraries(Loader.over("linux/arm64", [module], set(), SYSTEM)) == []


def test_gpu_only_libraries_are_a_warning_naming_the_module(tmp_path):
    files = {
        f"{SITE}/implicit/gpu/_cuda.so": library(
            tmp_path, "_cuda.so", "libcudart.so.11.0", "libcublas.so.11"
        ),
        f"{SITE}/implicit/cpu/_als.so": compiled(tmp_path),
    }
    loader = loader_of(files)
    verdict = Verdict.of(missing_libraries(loader), loader.files)
    assert [m.soname for m in verdict.errors] == ["libgomp.so.1"]  # a plain import needs it
    assert describe_warnings(verdict.warnings) == (
        f"warning: 1 module will not load on this image: /{SITE}/implicit/gpu/_cuda.so "
        "(libcublas.so.11: only a GPU machine has it, libcudart.so.11.0: only a GPU machine has it)"
    )
    # numba falls back from its TBB threading layer: that module's library is a warning too.
    tbb = MissingLibrary("libtbb.so.12", "x", f"/{SITE}/numba/np/ufunc/tbbpool.cpython-311-x.so")
    assert Verdict.of([tbb], ()) == Verdict((), ((tbb, "numba's optional threading layer"),))
    # A program a wheel ships (kaleido's headless browser) is run, never imported: a warning
    # naming its package, as nannyml's kaleido 0.2 needs libnss3 only to export figures.
    kaleido = f"/{SITE}/kaleido/executable/bin/kaleido"
    nss = MissingLibrary("libnss3.so", kaleido, kaleido)
    assert Verdict.of([nss], (), {kaleido}).errors == ()
    assert describe_warnings(Verdict.of([nss], (), {kaleido}).warnings).startswith(
        f"warning: 1 module will not load on this image: {kaleido} (libnss3.so: a program"
    )
    assert Verdict.of([nss], ()).errors == (nss,)  # the same library for an extension: error
    # That program's own libraries (kaleido/executable/lib) need each other, found only
    # through the LD_LIBRARY_PATH its launcher sets: no import loads them, and what they need
    # ships beside them, so a warning (nannyml's build was refused for it). A library that
    # is not beside it, or an extension module needing a neighbour, stays an error.
    lib = f"/{SITE}/kaleido/executable/lib"
    nspr = MissingLibrary("libnspr4.so", f"{lib}/libnss3.so", f"{lib}/libnss3.so")
    beside = Verdict.of([nspr], {f"{lib}/libnss3.so", f"{lib}/libnspr4.so"})
    assert beside.errors == ()
    assert describe_warnings(beside.warnings) == (
        f"warning: 1 module will not load on this image: {lib}/libnss3.so (libnspr4.so: "
        "a program's library, whose neighbours its launcher's LD_LIBRARY_PATH finds)"
    )
    assert Verdict.of([nspr], {f"{lib}/libnss3.so", f"/{SITE}/other/libnspr4.so"}).errors == (nspr,)
    extension = f"/{SITE}/pkg/_core.cpython-311-x86_64-linux-gnu.so"
    needs_neighbour = MissingLibrary("libpkg.so", extension, extension)
    assert Verdict.of([needs_neighbour], {extension, f"/{SITE}/pkg/libpkg.so"}).errors == (
        needs_neighbour,
    )
    # Shipped by a locked wheel (nvidia-cuda-runtime) but not found: an error after all.
    shipped = Verdict.of(missing_libraries(loader), {f"/{SITE}/nvidia/lib/libcudart.so.11.0"})
    assert "libcudart.so.11.0" in [m.soname for m in shipped.errors]


def test_the_build_warns_about_gpu_only_libraries_and_fails_on_the_rest(tmp_path, capsys):
    from daskbox.errors import MissingLibrariesError
    from daskbox.images.base import BaseImage
    from daskbox.images.pipeline import _judge_libraries
    from daskbox.images.settings import ImageSettings

    base = BaseImage(
        "python",
        "python",
        "sha256:0",
        "sha256:0",
        "linux/amd64",
        "3.11.7",
        "/usr/local/bin/python3.11",
        "",
        "",
        ("libc.so.6",),
        ("libc.so.6",),
    )
    plan = SimpleNamespace(
        platform="linux/amd64",
        base=base,
        settings=ImageSettings(repository="r", base_image="python"),
    )
    gpu = library(tmp_path, "_cuda.so", "libcuda.so.1", "libnvidia-ml.so.1")
    with layer({f"{SITE}/pkg/_cuda.so": gpu}) as archive:
        elves = list(elf_files_in_tar(archive))
    _judge_libraries(plan, elves, {e.path for e in elves}, {e.path for e in elves})
    warned = capsys.readouterr().err
    assert warned.startswith(f"warning: 1 module will not load on this image: /{SITE}/pkg/_cuda.so")
    assert "libcuda.so.1" in warned and "libnvidia-ml.so.1" in warned
    with layer({f"{SITE}/omp/ext.so": compiled(tmp_path)}) as archive:
        elves += list(elf_files_in_tar(archive))
    with pytest.raises(
        MissingLibrariesError, match=r"cannot load 1 shared library: libgomp\.so\.1"
    ):
        _judge_libraries(plan, elves, {e.path for e in elves}, {e.path for e in elves})
    ignoring = SimpleNamespace(
        platform="linux/amd64",
        base=base,
        settings=ImageSettings(
            repository="r", base_image="python", ignore_missing_libraries=("libgomp.so.1",)
        ),
    )
    _judge_libraries(ignoring, elves, {e.path for e in elves}, {e.path for e in elves})


def test_the_error_names_three_libraries_and_verbose_all():
    missing = [MissingLibrary(f"libm{i}.so.1", f"/site/ext{i}.so") for i in range(5)]
    missing.append(MissingLibrary("libgfortran-040039e1.so.5.0.0", "/site/ext.so"))
    short = describe_missing(missing, "linux/amd64")
    assert "\n" not in short and short.count("needed by") == 3
    assert "and 3 more (`invoke build --verbose` lists all)" in short
    assert short.endswith(
        'ignore-missing-libraries = ["libm0.so.1", "libm1.so.1", "libm2.so.1", ...]'
    )
    everything = describe_missing(missing, "linux/amd64", verbose=True)
    assert everything.count("needed by") == 6 and "more" not in everything
    # A hashed auditwheel soname gets no package, and no apt suggestion.
    assert missing[-1].package is None and "apt-packages" not in everything


def test_ignore_missing_libraries_is_a_list_of_names(tmp_path):
    project = tmp_path / "pyproject.toml"
    project.write_text(
        '[project]\nname = "x"\n[tool.daskbox]\nignore-missing-libraries = ["libfoo.so.1"]\n'
    )
    assert load_settings(tmp_path).ignore_missing_libraries == ("libfoo.so.1",)
    project.write_text(
        '[project]\nname = "x"\n[tool.daskbox]\nignore-missing-libraries = "libfoo"\n'
    )
    with pytest.raises(ConfigError, match="ignore-missing-libraries must be a list of file names"):
        load_settings(tmp_path)


@pytest.mark.parametrize("data", [b"not an elf file at all, but long enough to be read" * 2])
def test_files_that_are_not_elf_are_skipped(data):
    with layer({"opt/venv/README": data}) as archive:
        assert list(elf_files_in_tar(archive)) == []


def test_a_layer_is_scanned_once_and_read_back_the_same(tmp_path):
    path = tmp_path / "venv-layer.tar"
    with tarfile.open(path, "w") as archive:
        data = compiled(tmp_path, "-Wl,-rpath,$ORIGIN/x", "-Wl,--disable-new-dtags")
        info = tarfile.TarInfo("opt/venv/omp/ext.so")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    sidecar = tmp_path / "venv-layer.tar.scan.json"
    # A sidecar of the previous format (no class, no RPATH apart) is read again.
    sidecar.write_text(
        json.dumps(
            {
                "paths": ["/opt/venv/omp/ext.so"],
                "elves": [{"path": "/opt/venv/omp/ext.so", "needed": [], "search": []}],
            }
        )
    )
    first = scan_layer(path)
    assert json.loads(sidecar.read_text())["format"] == 3
    assert first.paths == {"/opt/venv/omp/ext.so"} and "libgomp.so.1" in first.elves[0].needed
    assert first.elves[0].rpath == ("$ORIGIN/x",) and first.elves[0].machine == "EM_X86_64"
    assert scan_layer(path) == first


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.cli
def test_invoke_build_names_three_missing_libraries_and_verbose_names_all(tmp_path, base_image):
    """omp-ext, relinked against four libraries python:*-slim lacks (the build host has them)."""
    from .conftest import copy_project

    project = copy_project("needs_libgomp/app", tmp_path, "localhost:5000/images-verbose")
    ext = project.parent / "libs" / "omp_ext" / "pyproject.toml"
    extra = '"-Wl,--no-as-needed", "-l:libatomic.so.1", "-l:libquadmath.so.0", "-l:libitm.so.1"'
    ext.write_text(
        ext.read_text().replace(
            'extra-link-args = ["-fopenmp"]', f'extra-link-args = ["-fopenmp", {extra}]'
        )
    )
    (project / "tasks.py").write_text("from daskbox.tasks import ns  # noqa: F401\n")
    invoke = str(Path(sys.executable).parent / "invoke")

    def build(*flags: str) -> str:
        done = subprocess.run(
            [invoke, "build", *flags], cwd=project, capture_output=True, text=True, check=False
        )
        assert done.returncode == 1, done.stderr
        return done.stderr.strip().splitlines()[-1]

    short = build()
    assert short.startswith("error: the linux/amd64 image cannot load 4 shared libraries: ")
    assert short.count("needed by") == 3 and "and 1 more (`invoke build --verbose`" in short
    everything = build("--verbose")
    assert everything.count("needed by") == 4 and "more" not in everything
    for soname in ("libatomic.so.1", "libgomp.so.1", "libitm.so.1", "libquadmath.so.0"):
        assert soname in everything
    assert '"libatomic1", "libgomp1", "libquadmath0"' in everything  # libitm: not in the table


@pytest.mark.docker
def test_the_base_facts_name_what_the_interpreter_loads_as_ldd_does(base_image):
    """What ld.so loads with the interpreter, read from the base's files, equals ``ldd`` run
    in the base (less the vDSO; ld.so by its soname, as DT_NEEDED names it)."""
    from daskbox.images.base import _read_base
    from daskbox.images.engine import DockerEngine

    engine = DockerEngine()
    facts = _read_base(engine, engine.local_image(base_image))
    shown = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            base_image,
            "ldd",
            str(facts["interpreter"]),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = {line.split()[0].rpartition("/")[2] for line in shown.splitlines() if line.strip()}
    assert set(facts["preloaded"]) == names - {"linux-vdso.so.1"}
    assert facts["main_rpath"] == []


def test_a_pie_is_an_executable_and_a_library_with_an_interpreter_is_not(tmp_path):
    """dlopen refuses a PIE (DF_1_PIE), not a library that also runs (PT_INTERP: glibc's own)."""
    main = tmp_path / "main.c"
    main.write_text("int main(void) { return 0; }\n")
    subprocess.run(["gcc", "-fPIE", "-pie", "-o", str(tmp_path / "tool"), str(main)], check=True)
    libc = Path("/lib/x86_64-linux-gnu/libc.so.6").read_bytes()
    assert b"/lib64/ld-linux-x86-64.so.2" in libc  # its PT_INTERP
    files = {"opt/venv/bin/tool": (tmp_path / "tool").read_bytes(), "opt/venv/libc.so.6": libc}
    with layer(files) as archive:
        kinds = {e.path: e.kind for e in elf_files_in_tar(archive)}
    assert kinds == {"/opt/venv/bin/tool": "executable", "/opt/venv/libc.so.6": "shared"}
