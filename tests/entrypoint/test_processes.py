"""processes.py: the exact commands and distributed configuration each child gets."""

from __future__ import annotations

import sys
from pathlib import Path

from daskbox.entrypoint.processes import scheduler_process, workers_process
from daskbox.entrypoint.settings import Overrides, Settings, TLSFiles
from daskbox.entrypoint.sizing import SizingPlan

PLAN = SizingPlan(
    workers=3,
    threads_per_worker=2,
    memory_per_worker=4_000_000_000,
    reserve=1,
    workers_source="",
    threads_source="",
    memory_source="",
)
SCHEDULER_FILE = Path("/tmp/x/scheduler.json")
TLS = TLSFiles(Path("/certs/ca.pem"), Path("/certs/cert.pem"), Path("/certs/key.pem"))


def test_plain_scheduler_and_workers():
    settings = Settings(Overrides(), scheduler_port=9000, dashboard_port=9001)
    scheduler = scheduler_process(settings, SCHEDULER_FILE)
    assert scheduler.argv == (
        sys.executable,
        "-m",
        "distributed.cli.dask_scheduler",
        "--port",
        "9000",
        "--dashboard-address",
        "127.0.0.1:0",
        "--preload",
        "daskbox.entrypoint.dashboard",
        "--scheduler-file",
        "/tmp/x/scheduler.json",
    )
    # distributed's own dashboard server is a stand-in: the preload serves the real one.
    assert scheduler.env["DASKBOX_SERVE_DASHBOARD"] == ":9001"
    workers = workers_process(settings, PLAN, SCHEDULER_FILE)
    assert workers.argv == (
        sys.executable,
        "-m",
        "distributed.cli.dask_worker",
        "--scheduler-file",
        "/tmp/x/scheduler.json",
        "--nworkers",
        "3",
        "--nthreads",
        "2",
        "--memory-limit",
        "4000000000",
        "--name",
        "worker",
        "--nanny",
        "--no-dashboard",
    )
    assert workers.env["DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD"] == "forkserver"
    assert not any("TLS" in name for name in {**scheduler.env, **workers.env})


def test_a_listen_host_goes_to_scheduler_dashboard_and_workers():
    settings = Settings(
        Overrides(), scheduler_port=9000, dashboard_port=9001, listen_host="127.0.0.1"
    )
    scheduler = scheduler_process(settings, SCHEDULER_FILE)
    assert scheduler.argv[3:7] == ("--host", "127.0.0.1", "--port", "9000")
    assert scheduler.env["DASKBOX_SERVE_DASHBOARD"] == "127.0.0.1:9001"
    workers = workers_process(settings, PLAN, SCHEDULER_FILE)
    assert workers.argv[-4:] == ("--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0")


def test_a_multiprocessing_method_set_by_the_user_wins():
    method = "DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD"
    settings = Settings(Overrides())
    workers = workers_process(settings, PLAN, SCHEDULER_FILE, {method: "spawn"})
    assert workers.env[method] == "spawn"


def test_idle_timeout_uses_the_scheduler_option_and_the_clients_preload():
    settings = Settings(Overrides(), idle_timeout=1800.0)
    argv = scheduler_process(settings, SCHEDULER_FILE).argv
    assert argv[-4:] == ("--idle-timeout", "1800.0s", "--preload", "daskbox.entrypoint.idle")


def test_tls_goes_through_distributed_configuration():
    settings = Settings(Overrides(), tls=TLS)
    for process in (
        scheduler_process(settings, SCHEDULER_FILE),
        workers_process(settings, PLAN, SCHEDULER_FILE),
    ):
        assert process.argv[-2:] == ("--protocol", "tls")
        assert process.env["DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION"] == "True"
        assert process.env["DASK_DISTRIBUTED__COMM__TLS__CA_FILE"] == "/certs/ca.pem"
        for role in ("SCHEDULER", "WORKER", "CLIENT"):
            assert process.env[f"DASK_DISTRIBUTED__COMM__TLS__{role}__CERT"] == "/certs/cert.pem"
            assert process.env[f"DASK_DISTRIBUTED__COMM__TLS__{role}__KEY"] == "/certs/key.pem"
        dashboard = "DASK_DISTRIBUTED__SCHEDULER__DASHBOARD__TLS__"
        assert process.env[dashboard + "CA_FILE"] == "/certs/ca.pem"
        assert process.env[dashboard + "CERT"] == "/certs/cert.pem"
        assert process.env[dashboard + "KEY"] == "/certs/key.pem"
