"""The Python part of the README's first run: the quickstart's grid search on the cluster.

Run from the quickstart project's environment (``poetry install`` in examples/quickstart),
once its cluster is launched::

    python -m daskbox.demo examples/quickstart [--connection FILE]

It connects with the environment check, runs the grid search on the cluster, runs the
same search serially in this process, and prints both times and the result.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from daskbox._tasks import Progress
from daskbox.client.connect import connect
from daskbox.client.connection import find_connection_file
from daskbox.errors import DaskboxError

QUICKSTART_MODULE = "quickstart"


class DemoError(DaskboxError):
    """The demo cannot run (the quickstart is not installed, or results disagree)."""


@dataclass(frozen=True)
class DemoResult:
    """Both runs of the grid search: the best penalty and how long each took."""

    best_alpha: float
    best_error: float
    candidates: int
    workers: int
    cluster_seconds: float
    serial_seconds: float

    def summary(self) -> str:
        """Three lines: the best penalty, then both timings and the speed-up."""
        speedup = self.serial_seconds / self.cluster_seconds if self.cluster_seconds else 0.0
        return (
            f"grid search of {self.candidates} penalties: best alpha {self.best_alpha:.4g} "
            f"(cross-validated mse {self.best_error:.4f})\n"
            f"  on the cluster ({self.workers} workers): {self.cluster_seconds:.2f} s\n"
            f"  serially here:             {self.serial_seconds:.2f} s "
            f"(cluster speed-up x{speedup:.2f})"
        )


def _quickstart() -> ModuleType:
    try:
        return importlib.import_module(QUICKSTART_MODULE)
    except ModuleNotFoundError:
        raise DemoError(
            f"the {QUICKSTART_MODULE} package is not importable here: run the demo from the "
            "quickstart's environment (`poetry install` in examples/quickstart, then `poetry run`)"
        ) from None


def run_demo(
    project_root: Path,
    connection_file: Path | None = None,
    echo: Progress = print,
    *,
    alphas: tuple[float, ...] | None = None,
    folds: int = 20,
) -> DemoResult:
    """Connect (environment check included), search on the cluster, then serially; compare.

    Reads the connection file (default: the project's only one). ``alphas`` (default: the
    quickstart's 100 penalties) and ``folds`` shrink the search for quick runs. Raises
    DemoError when the two runs disagree, which would mean the cluster computes something else.
    """
    quickstart = _quickstart()
    path = connection_file or find_connection_file(project_root)
    with connect(path=path) as client:
        workers = len(client.scheduler_info()["workers"])
        started = time.perf_counter()
        result = quickstart.grid_search(client, alphas, folds=folds)
        cluster_seconds = time.perf_counter() - started

    started = time.perf_counter()
    x, y = quickstart.make_data()
    serial = {
        alpha: quickstart.cross_validated_error(x, y, alpha, folds=folds) for alpha in result.errors
    }
    serial_seconds = time.perf_counter() - started

    # Same code and data: only floating-point summation order may differ (BLAS threads).
    if any(not math.isclose(serial[alpha], result.errors[alpha], rel_tol=1e-9) for alpha in serial):
        raise DemoError("the cluster's grid search disagrees with the serial one: report a bug")
    demo = DemoResult(
        best_alpha=result.best_alpha,
        best_error=result.errors[result.best_alpha],
        candidates=len(result.errors),
        workers=workers,
        cluster_seconds=cluster_seconds,
        serial_seconds=serial_seconds,
    )
    echo(demo.summary())
    return demo


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m daskbox.demo PROJECT [--connection FILE]``; one-line errors, non-zero exit."""
    parser = argparse.ArgumentParser(
        prog="python -m daskbox.demo",
        description="Run the quickstart's grid search on its launched cluster, then serially.",
    )
    parser.add_argument("project", type=Path, help="the quickstart project's folder")
    parser.add_argument(
        "--connection",
        type=Path,
        default=None,
        help="connection file (default: the project's only one in .daskbox/)",
    )
    arguments = parser.parse_args(argv)
    try:
        run_demo(arguments.project.resolve(), arguments.connection)
    except DaskboxError as error:
        # The same line `daskbox._tasks.one_line_errors` gives tasks, for a plain `python -m`.
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
