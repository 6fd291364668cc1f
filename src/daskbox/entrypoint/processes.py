"""Settings + SizingPlan -> the two processes to run: the real ``dask scheduler`` and one
``dask worker --nworkers N`` (N nannies, each restarting its worker). Pure.

Why one worker process for all nannies: each Python interpreter costs ~0.4 s of imports
and ~60 MB, and on a small machine N nanny interpreters starting at once compete for
the same cores as the workers they start (docs/benchmarks.md, "The entrypoint").

The CLIs are run as ``python -m distributed.cli.dask_*`` with this interpreter, so the
image's venv is used and no console-script lookup is needed. TLS and logging go through
distributed's configuration (``DASK_DISTRIBUTED__...`` variables), not hand-made contexts.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from daskbox.contract import ENV_SERVE_DASHBOARD, LOOPBACK
from daskbox.entrypoint.settings import Settings
from daskbox.entrypoint.sizing import SizingPlan

# Every line from the workers' pipe gets the same prefix; the pid and the logger name
# tell a nanny from its worker and one worker from another.
LOG_FORMAT = "%(asctime)s - pid %(process)d - %(name)s - %(levelname)s - %(message)s"


@dataclass(frozen=True)
class ProcessSpec:
    """One child: ``name`` prefixes each of its log lines; ``env`` is added to ours."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]


def dask_environment(settings: Settings) -> dict[str, str]:
    """distributed configuration shared by scheduler and workers, as environment variables."""
    env = {
        "PYTHONUNBUFFERED": "1",  # each log line reaches the supervisor when written
        "DASK_DISTRIBUTED__ADMIN__LOG_FORMAT": LOG_FORMAT,
    }
    if settings.tls is not None:
        ca, cert, key = (
            str(settings.tls.ca_file),
            str(settings.tls.cert_file),
            str(settings.tls.key_file),
        )
        env |= {
            "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
            "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": ca,
            "DASK_DISTRIBUTED__COMM__TLS__SCHEDULER__CERT": cert,
            "DASK_DISTRIBUTED__COMM__TLS__SCHEDULER__KEY": key,
            "DASK_DISTRIBUTED__COMM__TLS__WORKER__CERT": cert,
            "DASK_DISTRIBUTED__COMM__TLS__WORKER__KEY": key,
            # The scheduler and nannies also act as clients of each other.
            "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": cert,
            "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": key,
            # distributed's own HTTP servers (the scheduler's, replaced by the dashboard
            # preload, and each worker's) speak HTTPS with the same server certificate.
            "DASK_DISTRIBUTED__SCHEDULER__DASHBOARD__TLS__CA_FILE": ca,
            "DASK_DISTRIBUTED__SCHEDULER__DASHBOARD__TLS__CERT": cert,
            "DASK_DISTRIBUTED__SCHEDULER__DASHBOARD__TLS__KEY": key,
        }
    return env


def _host_args(settings: Settings) -> list[str]:
    """``--host`` when the settings name one address to listen on (default: every interface)."""
    return ["--host", settings.listen_host] if settings.listen_host else []


def scheduler_process(settings: Settings, scheduler_file: Path) -> ProcessSpec:
    """The scheduler: listens on the settings' host, writes ``scheduler_file`` once listening.

    distributed binds its own dashboard server to a loopback port nobody is told about; the
    ``daskbox.entrypoint.dashboard`` preload serves the dashboard on the real address,
    requiring client certificates under TLS, and stops that one (see its docstring).
    """
    argv = [
        sys.executable,
        "-m",
        "distributed.cli.dask_scheduler",
        *_host_args(settings),
        "--port",
        str(settings.scheduler_port),
        "--dashboard-address",
        f"{LOOPBACK}:0",
        "--preload",
        "daskbox.entrypoint.dashboard",
        "--scheduler-file",
        str(scheduler_file),
    ]
    if settings.tls is not None:
        argv += ["--protocol", "tls"]
    if settings.idle_timeout is not None:
        argv += [
            "--idle-timeout",
            f"{settings.idle_timeout}s",
            "--preload",
            "daskbox.entrypoint.idle",
        ]
    env = {
        **dask_environment(settings),
        ENV_SERVE_DASHBOARD: f"{settings.listen_host}:{settings.dashboard_port}",
    }
    return ProcessSpec("scheduler", tuple(argv), env)


MULTIPROCESSING_METHOD = "DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD"


def workers_process(
    settings: Settings,
    plan: SizingPlan,
    scheduler_file: Path | None,
    environ: Mapping[str, str] | None = None,
) -> ProcessSpec:
    """All workers, each under a nanny, in one ``dask worker`` process.

    Nannies start their workers with ``forkserver``: one server process imports distributed
    once and forks each worker (and each restart) from it, instead of every worker
    re-importing it under ``spawn``; that is most of the startup time on a small machine.
    The server is launched by the first nanny's start, after the nanny has set
    ``distributed.nanny.pre-spawn-environ`` (OMP_NUM_THREADS=1, ...), so workers still
    get those variables. ``DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD`` in ``environ``
    (e.g. ``spawn``) still wins.

    In worker mode (``settings.scheduler_address``, a worker VM) the workers join that
    scheduler instead of reading the local scheduler's file (``scheduler_file`` is None).
    """
    if settings.worker_mode:
        scheduler = [settings.scheduler_address]
    else:
        assert scheduler_file is not None
        scheduler = ["--scheduler-file", str(scheduler_file)]
    argv = [
        sys.executable,
        "-m",
        "distributed.cli.dask_worker",
        *scheduler,
        "--nworkers",
        str(plan.workers),
        "--nthreads",
        str(plan.threads_per_worker),
        "--memory-limit",
        str(plan.memory_per_worker),
        "--name",
        settings.node_name,
        "--nanny",
        "--no-dashboard",
        *_host_args(settings),
    ]
    if settings.listen_host:
        # Each worker still serves /health and /metrics: on that host too, any free port.
        argv += ["--dashboard-address", f"{settings.listen_host}:0"]
    if settings.tls is not None:
        argv += ["--protocol", "tls"]
    env = {
        **dask_environment(settings),
        MULTIPROCESSING_METHOD: (environ or {}).get(MULTIPROCESSING_METHOD, "forkserver"),
    }
    return ProcessSpec("workers", tuple(argv), env)
