"""The venv layer is made on the host, whatever the host's file system can record.

A Windows laptop keeps no executable bits (``chmod`` only sets read-only), makes no symbolic
links without special rights, and pypa installer writes absolute host paths into RECORD
there. The layer must come out byte-identical anyway: these tests take those abilities
away from this Linux host and compare the layers.
"""

from __future__ import annotations

import base64
import hashlib
import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import installer.destinations
import pytest

from daskbox.images.base import BaseImage
from daskbox.images.layers import venv_layer
from daskbox.images.wheels import Artifact

MINOR = f"{sys.version_info.major}.{sys.version_info.minor}"
SITE = f"opt/venv/lib/python{MINOR}/site-packages"


def make_wheel(folder: Path, extra: dict[str, bytes] | None = None) -> Artifact:
    """A wheel with a console script, a data script and an executable file in its package,
    plus the ``extra`` files."""
    path = folder / "tool_pkg-1.0-py3-none-any.whl"
    files: dict[str, tuple[bytes, int]] = {
        **{name: (data, 0o644) for name, data in (extra or {}).items()},
        "tool_pkg/__init__.py": (b"def main():\n    return 0\n", 0o644),
        "tool_pkg/helper.sh": (b"#!/bin/sh\necho helper\n", 0o755),
        "tool_pkg-1.0.data/scripts/tool-data": (b"#!python\nprint('data')\n", 0o755),
        "tool_pkg-1.0.dist-info/METADATA": (
            b"Metadata-Version: 2.1\nName: tool-pkg\nVersion: 1.0\n",
            0o644,
        ),
        "tool_pkg-1.0.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
            0o644,
        ),
        "tool_pkg-1.0.dist-info/entry_points.txt": (
            b"[console_scripts]\ntool = tool_pkg:main\n",
            0o644,
        ),
    }
    record = []
    with zipfile.ZipFile(path, "w") as archive:
        for name, (data, mode) in files.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (0o100000 | mode) << 16
            archive.writestr(info, data)
            digest = hashlib.sha256(data).digest()
            encoded = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            record.append(f"{name},sha256={encoded},{len(data)}")
        record.append("tool_pkg-1.0.dist-info/RECORD,,")
        archive.writestr("tool_pkg-1.0.dist-info/RECORD", "\n".join(record) + "\n")
    return Artifact(path, hashlib.sha256(path.read_bytes()).hexdigest())


def base_image() -> BaseImage:
    return BaseImage(
        name="python:stand-in",
        from_reference="python:stand-in",
        digest="sha256:" + "0" * 64,
        image_id="sha256:" + "1" * 64,
        platform="linux/amd64",
        python_version=f"{MINOR}.0",
        interpreter=f"/usr/local/bin/python{MINOR}",
        passwd="",
        group="",
        libraries=(),
    )


def members(layer: Artifact) -> dict[str, tuple[tarfile.TarInfo, bytes | None]]:
    found = {}
    with tarfile.open(layer.path) as archive:
        for member in archive.getmembers():
            stream = archive.extractfile(member) if member.isfile() else None
            found[member.name] = (member, stream.read() if stream else None)
    return found


def windows_like_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """No executable bits, no symbolic links, and installer's Windows branch for RECORD."""
    monkeypatch.setattr(installer.destinations, "make_file_executable", lambda path: None)
    monkeypatch.setattr(Path, "chmod", lambda self, mode, **kwargs: None)

    def no_symlinks(self: Path, target: object, target_is_directory: bool = False) -> None:
        raise OSError(1314, "A required privilege is not held by the client")

    monkeypatch.setattr(Path, "symlink_to", no_symlinks)
    monkeypatch.setattr(installer.destinations, "_WINDOWS", True)


def test_the_venv_layer_is_the_same_on_a_host_without_exec_bits_or_symlinks(tmp_path, monkeypatch):
    wheel = make_wheel(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "linux-cache"))
    on_linux = venv_layer((wheel,), base_image())

    windows_like_host(monkeypatch)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "windows-cache"))
    on_windows = venv_layer((wheel,), base_image())

    assert on_windows.path != on_linux.path  # made again, not read from the same cache
    assert on_windows.sha256 == on_linux.sha256
    assert on_windows.path.read_bytes() == on_linux.path.read_bytes()


def test_the_venv_layer_has_the_links_modes_and_record_pip_would_make(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    windows_like_host(monkeypatch)  # what is checked must not come from this host's disk
    found = members(venv_layer((make_wheel(tmp_path),), base_image()))

    python, _ = found["opt/venv/bin/python"]
    assert python.issym() and python.linkname == f"/usr/local/bin/python{MINOR}"
    assert found["opt/venv/bin/python3"][0].linkname == "python"
    assert found["opt/venv/lib64"][0].linkname == "lib"
    for executable in ("opt/venv/bin/tool", "opt/venv/bin/tool-data", f"{SITE}/tool_pkg/helper.sh"):
        assert found[executable][0].mode == 0o755, executable
    for plain in (f"{SITE}/tool_pkg/__init__.py", "opt/venv/pyvenv.cfg"):
        assert found[plain][0].mode == 0o644, plain
    script = found["opt/venv/bin/tool"][1]
    assert script is not None and script.startswith(b"#!/opt/venv/bin/python\n")
    record = found[f"{SITE}/tool_pkg-1.0.dist-info/RECORD"][1]
    assert record is not None
    lines = io.StringIO(record.decode()).read().splitlines()
    assert any(line.startswith("../../../bin/tool,sha256=") for line in lines), lines
    assert not any(":" in line.split(",")[0] or "\\" in line for line in lines), lines
    names = list(found)
    assert names.index("opt/venv/bin") < names.index("opt/venv/bin/python")
    assert all(member.mtime == 0 and member.uid == 0 for member, _ in found.values())


def test_a_wheel_with_bytecode_in_pycache_installs_without_a_warning_on_stderr(tmp_path):
    """numpy 1.26's wheels hold numpy/distutils/__pycache__/*.pyc: installer skips those
    files (as pip does) with a RuntimeWarning, which the user must not see."""
    cached = f"tool_pkg/__pycache__/__init__.cpython-{MINOR.replace('.', '')}.pyc"
    wheel = make_wheel(tmp_path, {cached: b"stale bytecode"})
    script = (
        "import sys; from pathlib import Path\n"
        "from daskbox.images.installing import install_wheels\n"
        "from daskbox.images.wheels import Artifact\n"
        "install_wheels([Artifact(Path(sys.argv[1]), '')], Path(sys.argv[2]), sys.argv[3])\n"
    )
    stage = tmp_path / "stage"
    done = subprocess.run(
        [sys.executable, "-c", script, str(wheel.path), str(stage), MINOR],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert (stage / SITE / "tool_pkg" / "__init__.py").is_file()
    assert not (stage / SITE / "tool_pkg" / "__pycache__").exists()  # skipped all the same
