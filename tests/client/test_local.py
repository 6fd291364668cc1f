"""The local side: lock hash and the lock's export for the image groups, or a note why not."""

from __future__ import annotations

import hashlib

from client.client_clusters import FIXTURE_PROJECTS, REPO_ROOT, copy_project
from daskbox.client.local import local_environment, project_root_of

STALE_LOCK = FIXTURE_PROJECTS / "stale_lock"
# Its extra "tables" adds tabulate to the main group.
WITH_EXTRAS = FIXTURE_PROJECTS / "extras_groups_markers"


def test_lock_hash_and_exported_names_for_the_image_groups(tmp_path):
    project = copy_project(REPO_ROOT, tmp_path / "project")
    local = local_environment(project, ("main",))
    assert local.lock_hash == hashlib.sha256((project / "poetry.lock").read_bytes()).hexdigest()
    assert local.note is None
    assert {"distributed", "psutil", "toolz"} <= local.locked
    assert "pytest" not in local.locked  # dev group: local-only
    assert "colorama" not in local.locked  # locked for Windows only: not expected on Linux


def test_extras_the_image_was_built_with_are_expected_on_the_cluster(tmp_path):
    project = copy_project(WITH_EXTRAS, tmp_path / "extras")
    without = local_environment(project, ("main",))
    assert "tabulate" not in without.locked and without.extras == ()
    # The connection file names the extras the image holds; the pyproject names none.
    local = local_environment(project, ("main",), ("tables",))
    assert local.note is None
    assert local.extras == ("tables",)
    assert local.locked == without.locked | {"tabulate"}


def test_older_connection_files_fall_back_to_the_projects_extras_setting(tmp_path):
    project = copy_project(WITH_EXTRAS, tmp_path / "extras")
    with (project / "pyproject.toml").open("a", encoding="utf-8") as pyproject:
        pyproject.write('\n[tool.daskbox]\nextras = "tables"\n')  # one name as a plain string
    local = local_environment(project, ("main",))
    assert local.note is None
    assert local.extras == ("tables",)
    assert "tabulate" in local.locked


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
