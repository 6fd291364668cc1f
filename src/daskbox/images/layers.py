"""The image's own layers, prepared on the host as tar files for the target platform.

Nothing here runs inside the image, so an arm64 image's layers are made at native speed on an
x86_64 host (and the other way round). Each layer is a tar with sorted entries, fixed
mtimes, owners and modes, added to the image by ``ADD layer.tar /`` (the classic builder
unpacks a local tar as it is, owners included), so the same inputs give a byte-identical
layer, and the registry already has it. Layers are cached in ``~/.cache/daskbox/layers`` under
a key of their inputs.

- ``user``: ``/etc/passwd`` and ``/etc/group`` of the base plus the non-root user, and its home.
- ``venv``: the locked wheels installed with pypa's ``installer`` into the target's
  ``/opt/venv`` layout: ``pyvenv.cfg`` and ``bin/python*`` pointing at the base image's
  interpreter, script shebangs for ``/opt/venv/bin/python``, bytecode compiled with
  unchecked-hash validation and a fixed hash seed (deterministic), or absent when the local
  CPython is another minor version than the image's.
- ``entrypoint``: daskbox's entrypoint module under ``/opt/daskbox`` (sources only).
- ``project``: the project's own wheels, installed the same way over ``/opt/venv``.
                                                                     [side effects: files]
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from daskbox.contract import IMAGE_UID, IMAGE_USER, VENV
from daskbox.images.base import BaseImage
from daskbox.images.cache import cache_dir, touch
from daskbox.images.wheels import Artifact, file_sha256

LAYERS_FORMAT = 1  # bump when a layer's layout changes: every cached layer is then remade
_MTIME = 0
HOME = f"/home/{IMAGE_USER}"


_Entry = tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]


def user_layer(base: BaseImage) -> Artifact:
    """The non-root user as files: the base's passwd/group plus one line each, and a home."""
    passwd = _with_line(
        base.passwd, IMAGE_USER, f"{IMAGE_USER}:x:{IMAGE_UID}:{IMAGE_UID}::{HOME}:/usr/sbin/nologin"
    )
    group = _with_line(base.group, IMAGE_USER, f"{IMAGE_USER}:x:{IMAGE_UID}:")
    entries: list[_Entry] = [
        _directory("etc"),
        _file("etc/group", group.encode()),
        _file("etc/passwd", passwd.encode()),
        _directory("home"),
        _directory(HOME.lstrip("/"), owner=IMAGE_UID),
    ]
    return _cached_layer("user", entries)


def entrypoint_layer(files: tuple[tuple[str, bytes], ...], root: str) -> Artifact:
    """daskbox's entrypoint files (context-relative ``daskbox/...``) under ``root``."""
    inside = root.strip("/")
    entries = [_file(f"{inside}/{name}", data) for name, data in files]
    return _cached_layer("entrypoint", [*_parents(info.name for info, _ in entries), *entries])


def venv_layer(wheels: tuple[Artifact, ...], base: BaseImage, skeleton: bool = True) -> Artifact:
    """``wheels`` installed into ``/opt/venv`` for the base's interpreter; with ``skeleton``
    the venv itself too (pyvenv.cfg, bin/python*), else an overlay of an existing venv.

    The layer does not depend on the host's file system: links and file modes are written
    into the tar from what the wheels say, not read back from disk (Windows keeps no
    executable bits and makes no symbolic links without special rights).
    """
    minor = ".".join(base.python_version.split(".")[:2])
    compiles = sys.version_info[:2] == tuple(int(p) for p in minor.split("."))
    key = hashlib.sha256(
        "\0".join(
            [
                str(LAYERS_FORMAT),
                VENV,
                base.platform,
                base.python_version,
                base.interpreter,
                str(skeleton),
                str(compiles),
                *sorted(w.sha256 for w in wheels),
            ]
        ).encode()
    ).hexdigest()[:32]
    layer = cache_dir("layers") / f"{'venv' if skeleton else 'project'}-{key}.tar"
    if layer.exists():
        touch(layer)
        return Artifact(layer, file_sha256(layer))
    site_packages = f"{VENV}/lib/python{minor}/site-packages"
    with tempfile.TemporaryDirectory(prefix="daskbox-venv-") as scratch:
        stage = Path(scratch)
        (stage / site_packages.lstrip("/")).mkdir(parents=True)
        # pypa installer (about 0.1 s to import) only when a layer is made, not for a no-op.
        from daskbox.images.installing import install_wheels

        executables = install_wheels(wheels, stage, minor)
        if compiles:
            _compile(stage / site_packages.lstrip("/"), site_packages)
        entries = _tree(stage, executables)
        if skeleton:
            entries = _merged(entries, _skeleton(base, minor))
        return _write_layer(layer, sorted(entries, key=lambda item: _order(_name_of(item[0]))))


def _skeleton(base: BaseImage, minor: str) -> list[_Entry]:
    """What ``python -m venv --without-pip /opt/venv`` makes, for the image's interpreter."""
    home = str(PurePosixPath(base.interpreter).parent)
    venv = VENV.lstrip("/")
    config = (
        f"home = {home}\n"
        "include-system-site-packages = false\n"
        f"version = {base.python_version}\n"
        f"executable = {base.interpreter}\n"
        f"command = {base.interpreter} -m venv --without-pip {VENV}\n"
    )
    links = {
        f"{venv}/bin/python": base.interpreter,
        f"{venv}/bin/python3": "python",
        f"{venv}/bin/python{minor}": "python",
        f"{venv}/lib64": "lib",  # as venv makes it on 64-bit Linux
    }
    entries: list[_Entry] = [
        _file(f"{venv}/pyvenv.cfg", config.encode()),
        _directory(f"{venv}/bin"),
        _directory(f"{venv}/include"),
    ]
    for name, target in links.items():
        link = _info(name, tarfile.SYMTYPE, 0o777)
        link.linkname = target
        entries.append(link)
    return entries


def _compile(site_packages: Path, inside: str) -> None:
    """Bytecode that is the same on every run: unchecked-hash pycs (no source mtime in them),
    a fixed hash seed (set and frozenset constants in a stable order), image paths."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            "-d",
            inside,
            str(site_packages),
        ],
        check=False,
        env={**os.environ, "PYTHONHASHSEED": "0"},
        capture_output=True,
    )  # a module that does not compile is left to compile (or fail) on import


def _with_line(text: str, name: str, line: str) -> str:
    kept = [entry for entry in text.splitlines() if entry.split(":", 1)[0] != name]
    return "".join(f"{entry}\n" for entry in [*kept, line])


def _tree(root: Path, executables: set[str]) -> list[tuple[_Entry, Path | None]]:
    """Every file and folder under ``root`` as normalized tar entries (0755 for
    ``executables``, 0644 for other files)."""
    found: list[tuple[_Entry, Path | None]] = []
    for path in root.rglob("*"):
        name = path.relative_to(root).as_posix()
        if path.is_dir():
            found.append((_directory(name), None))
        else:
            info = _info(name, tarfile.REGTYPE, 0o755 if name in executables else 0o644)
            info.size = path.stat().st_size
            found.append((info, path))
    return found


def _merged(
    tree: list[tuple[_Entry, Path | None]], entries: list[_Entry]
) -> list[tuple[_Entry, Path | None]]:
    """``tree`` plus in-memory ``entries`` (a folder both have is kept once)."""
    names = {_name_of(entry) for entry, _ in tree}
    return [*tree, *((entry, None) for entry in entries if _name_of(entry) not in names)]


def _name_of(entry: _Entry) -> str:
    return (entry if isinstance(entry, tarfile.TarInfo) else entry[0]).name


def _order(name: str) -> tuple[str, ...]:
    """Component by component, as on every host: a folder comes before its contents."""
    return tuple(name.split("/"))


def _info(name: str, kind: bytes, mode: int, owner: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = _MTIME
    info.uid = info.gid = owner
    info.uname = info.gname = ""
    return info


def _directory(name: str, owner: int = 0) -> tarfile.TarInfo:
    return _info(name, tarfile.DIRTYPE, 0o755, owner)


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = _info(name, tarfile.REGTYPE, 0o644)
    info.size = len(data)
    return info, data


def _parents(names: Iterable[str]) -> list[tarfile.TarInfo]:
    parents = {str(p) for name in names for p in PurePosixPath(name).parents if str(p) != "."}
    return [_directory(name) for name in sorted(parents)]


def _cached_layer(kind: str, entries: list[_Entry]) -> Artifact:
    """A small layer built in memory, cached under the hash of its bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for entry in sorted(entries, key=_name_of):
            if isinstance(entry, tarfile.TarInfo):
                archive.addfile(entry)
            else:
                archive.addfile(entry[0], io.BytesIO(entry[1]))
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    layer = cache_dir("layers") / f"{kind}-{digest[:32]}.tar"
    if not layer.exists():
        partial = layer.with_suffix(".part")
        partial.write_bytes(data)
        partial.replace(layer)
    touch(layer)
    return Artifact(layer, digest)


def _write_layer(layer: Path, entries: list[tuple[_Entry, Path | None]]) -> Artifact:
    partial = layer.with_name(f"{layer.name}.{os.getpid()}.part")
    with tarfile.open(partial, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for entry, source in entries:
            if not isinstance(entry, tarfile.TarInfo):
                archive.addfile(entry[0], io.BytesIO(entry[1]))
            elif source is None:
                archive.addfile(entry)
            else:
                with source.open("rb") as stream:
                    archive.addfile(entry, stream)
    partial.replace(layer)
    return Artifact(layer, file_sha256(layer))
