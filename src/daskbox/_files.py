"""Write a file atomically, readable by its owner only when asked: the one way daskbox writes
its records and connection files, on every laptop OS."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, text: str, *, private: bool = False) -> Path:
    """Write ``text`` to a temporary file next to ``path``, then rename it over ``path``.

    A reader never sees half a file, and a failure leaves the old file in place. ``private``
    makes the file readable by its owner only (mode 0600 on POSIX; on Windows the user's
    profile folder already keeps files private, and ``chmod`` sets only the read-only bit).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        # mkstemp creates the file 0600; a public one gets the usual 0644.
        if not private and os.name == "posix":
            Path(temporary).chmod(0o644)
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(text)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
