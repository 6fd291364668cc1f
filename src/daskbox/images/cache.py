"""``~/.cache/daskbox``: what builds keep between runs, bounded in size and age.

One folder per kind (``wheels`` by sha256, prepared ``layers``, ``debs`` per base image,
``build-requirements``, ``base`` image facts). Each entry (a folder or file directly inside a
kind) has its modification time set when a build uses it, so pruning removes the least
recently used entries first: everything unused for longer than the maximum age, then more
until the whole cache fits the maximum size. Builds prune after they finish; ``invoke
cache`` shows the cache and prunes it on demand.   [side effects: files]
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daskbox.errors import ConfigError

KINDS = ("wheels", "layers", "debs", "build-requirements", "git", "base")
DEFAULT_MAX_SIZE = "10GB"
DEFAULT_MAX_AGE = "30d"
ENV_MAX_SIZE = "DASKBOX_CACHE_MAX_SIZE"
ENV_MAX_AGE = "DASKBOX_CACHE_MAX_AGE"


def format_bytes(size: int) -> str:
    """``dask.utils.format_bytes``, imported only when a size is shown (dask takes a third
    of a second to import, too much for a no-op build)."""
    from dask.utils import format_bytes as dask_format_bytes

    return str(dask_format_bytes(size))


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/daskbox`` (``~/.cache/daskbox``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "daskbox"


def cache_dir(kind: str) -> Path:
    """The folder of one kind of entry, created when missing."""
    folder = cache_root() / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def touch(entry: Path) -> None:
    """Mark ``entry`` as just used (it survives pruning by age longest)."""
    with contextlib.suppress(OSError):
        os.utime(entry)


@dataclass(frozen=True)
class CacheLimits:
    """The bounds: total bytes, and seconds since an entry's last use."""

    max_size: int
    max_age: float

    @classmethod
    def resolve(cls, config: Mapping[str, Any] | None = None) -> CacheLimits:
        """Flag/invoke config (``cache-max-size``, ``cache-max-age``) > environment > default."""
        from dask.utils import parse_bytes, parse_timedelta

        config = config or {}
        size = config.get("cache-max-size") or os.environ.get(ENV_MAX_SIZE) or DEFAULT_MAX_SIZE
        age = config.get("cache-max-age") or os.environ.get(ENV_MAX_AGE) or DEFAULT_MAX_AGE
        try:
            max_size = parse_bytes(str(size))
        except (ValueError, TypeError, OverflowError):  # "5XB", "1e400GB"
            max_size = -1
        if max_size < 0:
            raise ConfigError(f"cache max size {size!r} is not a size: use e.g. 5GB or 500MiB")
        try:
            max_age = float(parse_timedelta(str(age), default="s") or 0)
        except (ValueError, KeyError, TypeError, OverflowError):  # "14 fortnights"
            max_age = math.nan
        if not max_age >= 0:  # NaN too
            raise ConfigError(f"cache max age {age!r} is not a duration: use e.g. 14d")
        return cls(max_size=max_size, max_age=max_age)


@dataclass(frozen=True)
class CacheEntry:
    """One unit of the cache that is kept or removed whole."""

    path: Path
    kind: str
    size: int
    last_used: float


def entries() -> list[CacheEntry]:
    """Every entry, least recently used first."""
    found: list[CacheEntry] = []
    root = cache_root()
    for kind in KINDS:
        folder = root / kind
        if not folder.is_dir():
            continue
        layout = folder / "sha256" if kind == "wheels" else folder
        for path in layout.iterdir() if layout.is_dir() else ():
            try:
                found.append(CacheEntry(path, kind, _size(path), path.stat().st_mtime))
            except FileNotFoundError:
                continue  # removed by a concurrent prune
    return sorted(found, key=lambda e: e.last_used)


def prune(limits: CacheLimits, now: float | None = None) -> list[CacheEntry]:
    """Remove entries older than the maximum age, then the least recently used ones until
    the cache fits the maximum size; return what was removed."""
    now = time.time() if now is None else now
    listed = entries()
    total = sum(e.size for e in listed)
    removed: list[CacheEntry] = []
    for entry in listed:
        if now - entry.last_used <= limits.max_age and total <= limits.max_size:
            continue
        _remove(entry.path)
        removed.append(entry)
        total -= entry.size
    return removed


def describe(listed: list[CacheEntry], limits: CacheLimits) -> list[str]:
    """Lines saying what the cache holds per kind, against the limits."""
    lines = [
        f"{cache_root()}: {format_bytes(sum(e.size for e in listed))} in {len(listed)} "
        f"entries (max {format_bytes(limits.max_size)}, entries unused for "
        f"{_days(limits.max_age)} are pruned)"
    ]
    for kind in KINDS:
        of_kind = [e for e in listed if e.kind == kind]
        if of_kind:
            oldest = _days(time.time() - of_kind[0].last_used)
            lines.append(
                f"  {kind:<20} {format_bytes(sum(e.size for e in of_kind)):>10}  "
                f"{len(of_kind)} entries, oldest used {oldest} ago"
            )
    return lines


def _days(seconds: float) -> str:
    return f"{seconds / 86400:.1f} days" if seconds >= 86400 else f"{seconds / 3600:.1f} hours"


def _size(path: Path) -> int:
    if not path.is_dir() or path.is_symlink():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir())


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
