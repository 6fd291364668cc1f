"""The README's first run, its Python part: the quickstart's grid search on a real cluster.

The cluster's environment is the quickstart's locked main group (as in its image) with the
quickstart package importable, over TLS; the README's full command (Docker image, local
registry, local launch, teardown) is the coordinator's end-to-end test.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from client.client_clusters import build_environment
from daskbox.demo import main, run_demo

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"


@pytest.fixture(scope="module")
def quickstart_environment(tmp_path_factory):
    return build_environment(
        tmp_path_factory.mktemp("env-quickstart"), QUICKSTART, sys.executable,
        source_packages=(QUICKSTART / "src" / "quickstart",),
    )


def test_demo_runs_the_grid_search_on_the_cluster_and_serially(
    quickstart_environment, tls_cluster, monkeypatch, capsys
):
    monkeypatch.syspath_prepend(str(QUICKSTART / "src"))
    _, path = tls_cluster(quickstart_environment, workers=2, in_project=QUICKSTART)
    result = run_demo(QUICKSTART, path)
    output = capsys.readouterr().out
    assert output.splitlines()[0].startswith("environment check: ")
    assert f"best alpha {result.best_alpha:.4g}" in output
    assert "on the cluster (2 workers)" in output
    assert result.candidates == 25
    assert result.cluster_seconds > 0 and result.serial_seconds > 0


def test_demo_without_the_quickstart_installed_is_one_line_error(capsys, tmp_path, monkeypatch):
    for name in [name for name in sys.modules if name.split(".")[0] == "quickstart"]:
        monkeypatch.delitem(sys.modules, name)
    assert main([str(tmp_path)]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert "quickstart" in line and "poetry install" in line
