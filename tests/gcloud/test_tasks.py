"""The tasks as a collection: names, help for every flag, imperative docstrings, --list."""

from __future__ import annotations

import inspect
import subprocess

import pytest

from conftest import DASKBOX
from daskbox.gcloud.tasks import launch, status, teardown


@pytest.mark.parametrize("task", [launch, status, teardown], ids=lambda t: t.name)
def test_every_flag_has_help(task):
    parameters = [name for name in inspect.signature(task.body).parameters if name != "c"]
    assert sorted(name.replace("_", "-") for name in parameters) == sorted(task.help)


@pytest.mark.parametrize("task", [launch, teardown], ids=lambda t: t.name)
def test_mutating_tasks_take_dry_run(task):
    assert "dry_run" in inspect.signature(task.body).parameters


def test_list_shows_the_three_tasks(tmp_path):
    listed = subprocess.run([str(DASKBOX), "--list"], cwd=tmp_path, capture_output=True, text=True)
    for line in (
        "launch     Launch the cluster on a Compute Engine VM",
        "status     List daskbox clusters",
        "teardown   Delete the cluster",
    ):
        assert line.split()[0] in listed.stdout
        assert " ".join(line.split()[1:]) in " ".join(listed.stdout.split())


def test_status_without_gcloud_lists_local_clusters(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    result = subprocess.run(
        [str(DASKBOX), "status"],
        cwd=tmp_path,
        env={"PATH": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "gcloud is not installed: listing local clusters only" in result.stdout
