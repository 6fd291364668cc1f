"""~/.cache/daskbox stays bounded: pruning by age, then by size, least recently used first."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daskbox.errors import ConfigError
from daskbox.images.cache import CacheLimits, cache_dir, entries, prune

DAY = 86400


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "daskbox"


def entry(kind: str, name: str, size: int, age_days: float) -> Path:
    folder = cache_dir(kind) / ("sha256" if kind == "wheels" else "")
    path = folder / name
    if kind == "wheels":
        path.mkdir(parents=True)
        (path / "x.whl").write_bytes(b"w" * size)
    else:
        path.write_bytes(b"l" * size)
    used = time.time() - age_days * DAY
    os.utime(path, (used, used))
    return path


def test_old_entries_go_first_then_the_least_recently_used_until_it_fits(cache_home):
    stale = entry("layers", "venv-old.tar", 10, age_days=40)
    older = entry("wheels", "a" * 64, 600, age_days=5)
    newer = entry("debs", "recent", 600, age_days=1)
    assert [e.path for e in entries()] == [stale, older, newer]
    removed = prune(CacheLimits(max_size=1000, max_age=30 * DAY))
    assert [e.path for e in removed] == [stale, older]
    assert not stale.exists() and not older.exists() and newer.exists()
    assert prune(CacheLimits(max_size=1000, max_age=30 * DAY)) == []


def test_limits_come_from_config_then_environment(monkeypatch):
    monkeypatch.setenv("DASKBOX_CACHE_MAX_SIZE", "2GB")
    limits = CacheLimits.resolve({"cache-max-age": "14d"})
    assert limits == CacheLimits(max_size=2_000_000_000, max_age=14 * DAY)
    assert CacheLimits.resolve({"cache-max-size": "500MiB"}).max_size == 500 * 2**20
    with pytest.raises(ConfigError, match=r"cache max size 'lots' is not a size: use e\.g\. 5GB"):
        CacheLimits.resolve({"cache-max-size": "lots"})
    with pytest.raises(ConfigError, match=r"cache max age '3 fortnights' is not a duration"):
        CacheLimits.resolve({"cache-max-age": "3 fortnights"})


def test_cache_task_shows_and_prunes(cache_home, tmp_path):
    entry("layers", "venv-old.tar", 10, age_days=40)
    entry("layers", "venv-new.tar", 10, age_days=0)
    (tmp_path / "tasks.py").write_text("from daskbox.tasks import ns  # noqa: F401\n")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "0"\n')
    invoke = str(Path(sys.executable).parent / "invoke")
    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home.parent)}
    shown = subprocess.run(
        [invoke, "cache"], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "20 B in 2 entries" in shown and "layers" in shown
    pruned = subprocess.run(
        [invoke, "cache", "--prune", "--max-age", "30d"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "removed 1 entries, 10 B" in pruned and "10 B in 1 entries" in pruned
