"""A deterministic build context: a tar with sorted entries, fixed mtimes, owners and modes.

The same inputs give the same bytes on every machine, so Docker's cache (keyed on file
content and metadata) hits whenever nothing relevant changed.   [side effects: a temp file]
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

_MTIME = 0


@dataclass(frozen=True)
class ContextFile:
    """One file of the context: bytes in memory or a file on disk."""

    data: bytes | None = None
    path: Path | None = None
    executable: bool = False


def write_context(files: Mapping[str, ContextFile]) -> IO[bytes]:
    """Return a rewound temp file holding the tar of ``files`` (archive name -> content).

    A name ending in "/" is a directory, included even when nothing is in it.
    """
    stream: IO[bytes] = tempfile.TemporaryFile(prefix="daskbox-context-")  # noqa: SIM115
    with tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for directory in sorted(_parent_directories(files)):
            info = _info(directory, tarfile.DIRTYPE, 0o755)
            archive.addfile(info)
        for name in sorted(files):
            entry = files[name]
            if name.endswith("/"):
                continue  # an explicit (possibly empty) directory, added above
            if entry.path is not None:
                info = _info(name, tarfile.REGTYPE, 0o755 if entry.executable else 0o644)
                info.size = entry.path.stat().st_size
                with entry.path.open("rb") as source:
                    archive.addfile(info, source)
            else:
                data = entry.data or b""
                info = _info(name, tarfile.REGTYPE, 0o755 if entry.executable else 0o644)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    stream.seek(0)
    return stream


def _parent_directories(files: Mapping[str, ContextFile]) -> set[str]:
    directories: set[str] = set()
    for name in files:
        parts = name.rstrip("/").split("/")
        depth = len(parts) if name.endswith("/") else len(parts) - 1
        directories.update("/".join(parts[:level]) for level in range(1, depth + 1))
    return directories


def _info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = _MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info
