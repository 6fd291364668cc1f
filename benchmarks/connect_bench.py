"""connect() benchmark: seconds from ``connect()`` to a checked client, 2-worker TLS cluster.

Run:  .venv/bin/python benchmarks/connect_bench.py [--repeat 5] [--workers 2]

The cluster is a scheduler and workers (separate processes, TLS) from an image-like
environment: a fresh venv holding exactly daskbox's own locked main group, built the way
the image installs it (tests/client/client_clusters.py). The local side is this
interpreter, so the full check compares every distribution and finds them equal.

Prints, each as the median of ``--repeat`` runs:
1. a fresh ``python`` process: import daskbox.connect + connect(), with Poetry's export
   cache cold (first connect after a lock change) and warm (every later one);
2. connect() in a running session, split into its stages: TLS Client, local side
   (lock hash + cached export), reports from scheduler and workers, comparison,
   plugin registration.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from distributed.versions import VersionMismatchWarning  # noqa: E402

from client.client_clusters import TLSCluster, build_environment, copy_project  # noqa: E402
from daskbox.client import connect as connect_module  # noqa: E402
from daskbox.client.check import check_reports  # noqa: E402
from daskbox.client.connect import DaskboxClient, connect, security_for  # noqa: E402
from daskbox.client.connection import read_connection_file  # noqa: E402
from daskbox.client.local import local_environment, project_root_of  # noqa: E402
from daskbox.entrypoint.environment import REPORT_TOPIC, EnvironmentReporter  # noqa: E402
from daskbox.gcloud.tls import make_tls_material  # noqa: E402

FRESH_PROCESS = """
import sys, time
started = time.perf_counter()
from daskbox import connect
imported = time.perf_counter()
client = connect(path=sys.argv[1])
done = time.perf_counter()
client.close()
print(imported - started, done - imported)
"""


def fresh_process(path: Path) -> tuple[float, float]:
    output = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(path)], check=True, capture_output=True, text=True
    ).stdout.split()
    return float(output[-2]), float(output[-1])


def stages(path: Path) -> dict[str, float]:
    """One connect(), timed stage by stage (the same calls connect() makes)."""
    times: dict[str, float] = {}
    mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        times[name] = now - mark
        mark = now

    connection = read_connection_file(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VersionMismatchWarning)  # as connect() does
        client = DaskboxClient(connection.scheduler_address, security=security_for(connection))
    lap("TLS client")
    local = local_environment(project_root_of(path), connection.groups, connection.extras)
    lap("local side")
    reports = connect_module.gather_reports(client)
    lap(f"reports ({len(reports)} processes)")
    result = check_reports(local, reports)
    assert result.ok, result.mismatch_message()
    lap("comparison")
    client.register_plugin(EnvironmentReporter(), name=REPORT_TOPIC)
    lap("plugin")
    client.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    arguments = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="client-bench-"))
    project = copy_project(REPO, workdir / "project")
    print("building the image-like environment ...", flush=True)
    environment = build_environment(workdir / "env", project, sys.executable)
    cluster = TLSCluster("client-bench", workdir, make_tls_material("client-bench"))
    try:
        cluster.start_scheduler(environment)
        cluster.start_workers(environment, arguments.workers, "bench")
        path = cluster.write_connection_file(project, environment)
        deadline = time.monotonic() + 90
        while True:
            try:
                with connect(path=path, check=False) as client:
                    client.wait_for_workers(arguments.workers, timeout=90)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

        cache = project / ".daskbox" / "cache"
        cold, warm = [], []
        for _ in range(arguments.repeat):
            shutil.rmtree(cache, ignore_errors=True)
            cold.append(fresh_process(path))
            warm.append(fresh_process(path))
        session = []
        for _ in range(arguments.repeat):
            started = time.perf_counter()
            connect(path=path).close()
            session.append(time.perf_counter() - started)
        breakdown = [stages(path) for _ in range(arguments.repeat)]

        def median(values: list[float]) -> str:
            return f"{statistics.median(values):.3f} s"

        print(f"\nconnect() with the full environment check, {arguments.workers}-worker TLS "
              f"cluster, median of {arguments.repeat}:")
        print(f"  fresh process, export cache cold: import {median([c[0] for c in cold])}"
              f" + connect() {median([c[1] for c in cold])}")
        print(f"  fresh process, export cache warm: import {median([w[0] for w in warm])}"
              f" + connect() {median([w[1] for w in warm])}")
        print(f"  in a running session:            connect() {median(session)}")
        for stage in breakdown[0]:
            print(f"    {stage:<24} {median([b[stage] for b in breakdown])}")
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
