"""The local side: the lock hash, and what the image record says the image's groups hold,
without Poetry; or a note saying what was not checked."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys

import pytest

from client.client_clusters import FIXTURE_PROJECTS, REPO_ROOT, copy_project
from daskbox.client.connection import ConnectionFile
from daskbox.client.local import local_environment, project_root_of
from daskbox.images.environment import Platform
from daskbox.images.lock import export_environment

# Drives invoke, poetry or gcloud: with the full suite, not the quick in-process runs.
pytestmark = pytest.mark.cli

STALE_LOCK = FIXTURE_PROJECTS / "stale_lock"
# Its extra "tables" adds tabulate to the main group.
WITH_EXTRAS = FIXTURE_PROJECTS / "extras_groups_markers"


def connection_for(project, groups=("main",), extras=()) -> ConnectionFile:
    """What launch writes: the record build + push handed over, for ``groups``/``extras``."""
    exported = export_environment(project, Platform.local(), groups, extras)
    installed = {str(r.name): r.version or "" for r in exported.requirements}
    record = exported.image_record(reference="r:t", image_id="", installed=installed)
    return ConnectionFile(
        instance="x",
        target="local",
        scheduler_address="tls://127.0.0.1:1",
        dashboard_url="",
        image="r:t",
        lock_hash=record.lock_hash,
        groups=groups,
        extras=extras,
        tls=None,
        record=record,
    )


def test_lock_hash_and_the_records_names_for_the_image_groups(tmp_path):
    project = copy_project(REPO_ROOT, tmp_path / "project")
    local = local_environment(project, connection_for(project))
    assert local.lock_hash == hashlib.sha256((project / "poetry.lock").read_bytes()).hexdigest()
    assert local.note is None
    assert {"distributed", "psutil", "toolz"} <= local.locked.image.keys()
    assert "pytest" not in local.locked.image  # dev group: local-only
    assert "colorama" not in local.locked.image  # locked for Windows only: not expected on Linux
    # This interpreter is Linux too: the lock gives both sides the same set.
    assert local.locked.local == local.locked.image


def test_extras_the_image_was_built_with_are_expected_on_the_cluster(tmp_path):
    project = copy_project(WITH_EXTRAS, tmp_path / "extras")
    without = local_environment(project, connection_for(project))
    assert "tabulate" not in without.locked.image and without.extras == ()
    local = local_environment(project, connection_for(project, extras=("tables",)))
    assert local.note is None
    assert local.extras == ("tables",)
    assert local.locked.image.keys() == without.locked.image.keys() | {"tabulate"}


def test_without_a_record_local_only_packages_are_not_told_apart(tmp_path):
    project = copy_project(WITH_EXTRAS, tmp_path / "extras")
    explicit_image = dataclasses.replace(connection_for(project), record=None)
    local = local_environment(project, explicit_image)
    assert local.locked is None
    assert "no daskbox record" in local.note


def test_without_a_lock_the_check_says_what_it_skipped(tmp_path):
    project = copy_project(WITH_EXTRAS, tmp_path / "extras")
    connection = connection_for(project)
    (project / "poetry.lock").unlink()
    local = local_environment(project, connection)
    assert local.lock_hash is None and local.locked is not None
    assert "no local poetry.lock" in local.note


def test_a_stale_lock_still_gives_its_hash_without_poetry(tmp_path):
    """connect() reads the lock's bytes only: Poetry's opinion of the lock is not asked."""
    project = copy_project(STALE_LOCK, tmp_path / "stale")
    connection = connection_for(copy_project(REPO_ROOT, tmp_path / "other"))
    local = local_environment(project, connection)
    assert local.lock_hash == hashlib.sha256((project / "poetry.lock").read_bytes()).hexdigest()
    assert local.note is None


def test_the_light_client_imports_neither_poetry_nor_docker_nor_invoke(tmp_path):
    """``from daskbox import connect`` and the local side of ``connect()``, in a fresh process."""
    project = copy_project(WITH_EXTRAS, tmp_path / "extras")
    path = tmp_path / "connection.json"
    path.write_text(connection_for(project).to_json())
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from daskbox import connect\n"
        "from daskbox.client.connection import read_connection_file\n"
        "from daskbox.client.local import local_environment\n"
        "connection = read_connection_file(Path(sys.argv[1]))\n"
        "local_environment(Path(sys.argv[2]), connection)\n"
        "heavy = {'poetry', 'docker', 'cleo', 'invoke'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(path), str(project)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[]"


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
