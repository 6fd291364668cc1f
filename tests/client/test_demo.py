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
from client.conftest import synced_site
from daskbox.demo import main, run_demo

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"


@pytest.fixture(scope="module")
def quickstart_environment(tmp_path_factory):
    return build_environment(
        tmp_path_factory.mktemp("env-quickstart"),
        QUICKSTART,
        sys.executable,
        source_packages=(QUICKSTART / "src" / "quickstart",),
    )


# A few penalties and folds keep the test quick; the demo's default is the quickstart's full grid.
ALPHAS = (0.01, 10.0, 1000.0)
FOLDS = 3


def test_demo_runs_the_grid_search_on_the_cluster_and_serially(
    quickstart_environment, tls_cluster, monkeypatch, capsys, tmp_path
):
    monkeypatch.syspath_prepend(str(QUICKSTART / "src"))
    # This session, as `poetry install` in the quickstart makes it (bokeh and its plots too).
    monkeypatch.syspath_prepend(str(synced_site(quickstart_environment.record, tmp_path / "site")))
    from quickstart import cross_validated_error, make_data

    _, path = tls_cluster(quickstart_environment, workers=2, in_project=QUICKSTART)
    result = run_demo(QUICKSTART, path, alphas=ALPHAS, folds=FOLDS)
    output = capsys.readouterr().out

    # Independently: the same search, serially, in this process.
    x, y = make_data()
    errors = {alpha: cross_validated_error(x, y, alpha, folds=FOLDS) for alpha in ALPHAS}
    best_alpha = min(errors, key=errors.__getitem__)
    assert result.best_alpha == best_alpha
    assert result.best_error == pytest.approx(errors[best_alpha], rel=1e-9)
    assert result.candidates == len(ALPHAS)
    assert result.workers == 2

    lines = output.splitlines()
    assert lines[0].startswith("environment check: ") and "2 workers" in lines[0]
    assert lines[1].startswith("dashboard: http://127.0.0.1:")
    summary = f"grid search of {len(ALPHAS)} penalties: best alpha {best_alpha:.4g} "
    assert lines[2].startswith(summary)
    assert f"on the cluster (2 workers): {result.cluster_seconds:.2f} s" in output
    assert f"serially here:             {result.serial_seconds:.2f} s" in output


def test_demo_without_the_quickstart_installed_is_one_line_error(capsys, tmp_path, monkeypatch):
    for name in [name for name in sys.modules if name.split(".")[0] == "quickstart"]:
        monkeypatch.delitem(sys.modules, name)
    assert main([str(tmp_path)]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: ") and "quickstart" in line and "poetry install" in line
