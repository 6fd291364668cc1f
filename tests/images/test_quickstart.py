"""The quickstart example works as a user project: its grid search and its tasks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from distributed import Client, LocalCluster

from .conftest import QUICKSTART


def test_grid_search_runs_on_a_distributed_client(monkeypatch):
    monkeypatch.syspath_prepend(str(QUICKSTART / "src"))
    from quickstart import cross_validated_error, grid_search, make_data

    alphas = (0.01, 1.0, 1000.0)
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False) as cluster,
        Client(cluster) as client,
    ):
        result = grid_search(client, alphas=alphas, folds=3)
    x, y = make_data()
    assert result.errors == {a: cross_validated_error(x, y, a, folds=3) for a in alphas}
    assert result.best_alpha == min(alphas, key=result.errors.__getitem__)
    assert result.errors[1000.0] > result.errors[1.0]  # heavy shrinkage underfits


def test_two_line_tasks_file_lists_daskbox_tasks():
    listed = subprocess.run(
        [str(Path(sys.executable).parent / "invoke"), "--list"],
        cwd=QUICKSTART,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in ("build", "push", "dockerfile", "launch", "teardown"):
        assert f"  {name} " in listed
