"""The local side: lock hash and the lock's export for the image groups, or a note why not."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from daskbox.client.local import local_environment, project_root_of

REPO_ROOT = Path(__file__).resolve().parents[2]
STALE_LOCK = REPO_ROOT / "tests" / "fixtures" / "projects" / "stale_lock"


def copy_project(source: Path, destination: Path) -> Path:
    destination.mkdir()
    for name in ("pyproject.toml", "poetry.lock"):
        shutil.copy2(source / name, destination / name)
    return destination


def test_lock_hash_and_exported_names_for_the_image_groups(tmp_path):
    project = copy_project(REPO_ROOT, tmp_path / "project")
    local = local_environment(project, ("main",))
    assert local.lock_hash == hashlib.sha256((project / "poetry.lock").read_bytes()).hexdigest()
    assert local.note is None
    assert {"distributed", "psutil", "toolz"} <= local.locked
    assert "pytest" not in local.locked  # dev group: local-only
    assert "colorama" not in local.locked  # locked for Windows only: not expected on Linux


def test_without_a_lock_the_check_says_what_it_skipped(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "0"\n')
    local = local_environment(tmp_path, ("main",))
    assert local.lock_hash is None and local.locked is None
    assert "no local poetry.lock" in local.note


def test_a_lock_poetry_cannot_export_still_gives_the_hash_and_a_note(tmp_path):
    project = copy_project(STALE_LOCK, tmp_path / "stale")
    local = local_environment(project, ("main",))
    assert local.lock_hash == hashlib.sha256((project / "poetry.lock").read_bytes()).hexdigest()
    assert local.locked is None
    assert "poetry lock" in local.note


def test_project_root_of_a_connection_file(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    (project / "pyproject.toml").write_text("")
    assert project_root_of(project / ".daskbox" / "a.json") == project.resolve()
    # A file kept elsewhere: the project around the current folder, or none.
    monkeypatch.chdir(project / "notebooks")
    assert project_root_of(tmp_path / "downloads" / "a.json") == project.resolve()
    monkeypatch.chdir(tmp_path)
    assert project_root_of(tmp_path / "downloads" / "a.json") is None
