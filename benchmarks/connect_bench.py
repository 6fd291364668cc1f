"""connect() benchmark: seconds from ``connect()`` to a checked client, 2-worker TLS cluster.

Run:  .venv/bin/python benchmarks/connect_bench.py [--repeat 5] [--workers 2]

The cluster is a scheduler and workers (separate processes, TLS) from an image-like
environment: a fresh venv holding exactly daskbox's own locked main group, built the way
the image installs it (tests/client/client_clusters.py). The local side is this
interpreter, so the full check compares every distribution and finds them equal.

Prints, each as the median of ``--repeat`` runs, all measured in the same run against the
same cluster:
1. a fresh ``python`` process, from its first line to a connected client, imports
   included: ``from daskbox import connect; connect()`` (the cross-platform environment
   check and the dashboard forwarder included) against a bare
   ``from distributed import Client; Client(address, security=...)`` with the same
   certificates, and their ratio (issue 12: at most 1.2x; issue 10: connect() at most 1 s);
2. connect() in a running session, split into its stages: TLS Client, local side (lock
   hash + the record's markers evaluated for both platforms), reports from scheduler and
   workers, comparison, plugin registration, dashboard forwarder.
"""

from __future__ import annotations

import argparse
import compileall
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
from daskbox.client.connect import (  # noqa: E402
    DaskboxClient,
    connect,
    security_for,
    start_dashboard,
)
from daskbox.client.connection import read_connection_file  # noqa: E402
from daskbox.client.dashboard import served_dashboard_port  # noqa: E402
from daskbox.client.local import local_environment, project_root_of  # noqa: E402
from daskbox.entrypoint.environment import REPORT_TOPIC, EnvironmentReporter  # noqa: E402
from daskbox.gcloud.tls import make_tls_material  # noqa: E402

FRESH_PROCESS = """
import sys, time
started = time.perf_counter()
from daskbox import connect
imported = time.perf_counter()
client = connect(path=sys.argv[1])
print(imported - started, time.perf_counter() - imported)
client.close()
"""

BARE_PROCESS = """
import json, sys, time
started = time.perf_counter()
from distributed import Client
from distributed.security import Security
imported = time.perf_counter()
connection = json.load(open(sys.argv[1]))
tls = connection["tls"]
client = Client(connection["scheduler_address"], security=Security(
    require_encryption=True, tls_ca_file=tls["ca_pem"], tls_client_cert=tls["cert_pem"],
    tls_client_key=tls["key_pem"]))
print(imported - started, time.perf_counter() - imported)
client.close()
"""


def fresh_process(code: str, path: Path) -> tuple[float, float]:
    """Seconds from the process's first line to the import done, then to a connected client."""
    output = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code, str(path)],
        check=True,
        capture_output=True,
        text=True,
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
    local = local_environment(project_root_of(path), connection)
    lap("local side")
    reports = connect_module.gather_reports(client)
    lap(f"reports ({len(reports)} processes)")
    result = check_reports(local, reports)
    assert result.ok, result.mismatch_message()
    lap("comparison")
    client.register_plugin(EnvironmentReporter(), name=REPORT_TOPIC)
    lap("plugin")
    served = served_dashboard_port(client.scheduler_info())
    assert served is not None
    forwarder = start_dashboard(connection, security_for(connection), served, 0)
    lap("dashboard forwarder")
    forwarder.close()
    client.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    arguments = parser.parse_args()

    # An installed daskbox has its bytecode (written by the installer or on first import);
    # under PYTHONDONTWRITEBYTECODE every fresh process would compile it from source.
    compileall.compile_dir(REPO / "src", quiet=1)
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

        daskbox_runs, bare_runs = [], []
        # Interleaved, so both see the same machine load, and each goes first every other
        # round (the second of two back-to-back processes finds more of the files cached).
        for round_ in range(arguments.repeat):
            pair = [(FRESH_PROCESS, daskbox_runs), (BARE_PROCESS, bare_runs)]
            for code, runs in pair if round_ % 2 == 0 else reversed(pair):
                runs.append(fresh_process(code, path))
        session = []
        for _ in range(arguments.repeat):
            started = time.perf_counter()
            connect(path=path).close()
            session.append(time.perf_counter() - started)
        breakdown = [stages(path) for _ in range(arguments.repeat)]

        def median(values: list[float]) -> str:
            return f"{statistics.median(values):.3f} s"

        daskbox_total = [sum(run) for run in daskbox_runs]
        bare_total = [sum(run) for run in bare_runs]
        ratio = statistics.median(daskbox_total) / statistics.median(bare_total)
        print(
            f"\nconnect() with the full environment check, {arguments.workers}-worker TLS "
            f"cluster, median of {arguments.repeat}:"
        )
        print(
            f"  fresh process, imports included: connect() {median(daskbox_total)}, "
            f"bare distributed.Client {median(bare_total)}, ratio {ratio:.2f}x"
        )
        for label, runs in (("connect()", daskbox_runs), ("bare Client", bare_runs)):
            print(
                f"    {label:<12} import {median([run[0] for run in runs])}"
                f" + connect {median([run[1] for run in runs])}"
            )
        print(f"  in a running session:            connect() {median(session)}")
        for stage in breakdown[0]:
            print(f"    {stage:<24} {median([b[stage] for b in breakdown])}")
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
