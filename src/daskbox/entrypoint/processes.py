"""Settings + SizingPlan -> the two processes to run: the real ``dask scheduler`` and one
``dask worker --nworkers N`` (N nannies, each restarting its worker). Pure.

Why one worker process for all nannies: each Python interpreter costs ~0.4 s of imports
and ~60 MB, and on a small machine N nanny interpreters starting at once compete for
the same cores as the workers they start (see the README's benchmark).

The CLIs are run as ``python -m distributed.cli.dask_*`` with this interpreter, so the
image's venv is used and no console-script lookup is needed. TLS and logging go through
distributed's configuration (``DASK_DISTRIBUTED__...`` variables), not hand-made contexts.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

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
            # The dashboard is served over HTTPS with the same server certificate.
            # distributed asks browsers for no client certificate there: the dashboard
            # is encrypted, and the firewall (owner's /32) limits who can reach it.
            "DASK_DISTRIBUTED__SCHEDULER__DASHBOARD__TLS__CA_FILE": ca,
            "DASK_DISTRIBUTED__SCHEDULER__DASHBOARD__TLS__CERT": cert,
            "DASK_DISTRIBUTED__SCHEDULER__DASHBOARD__TLS__KEY": key,
        }
    return env


def scheduler_process(settings: Settings, scheduler_file: Path) -> ProcessSpec:
    """The scheduler: listens on all interfaces, writes ``scheduler_file`` once listening."""
    argv = [
        sys.executable,
        "-m",
        "distributed.cli.dask_scheduler",
        "--port",
        str(settings.scheduler_port),
        "--dashboard-address",
        f":{settings.dashboard_port}",
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
    return ProcessSpec("scheduler", tuple(argv), dask_environment(settings))


MULTIPROCESSING_METHOD = "DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD"


def workers_process(
    settings: Settings,
    plan: SizingPlan,
    scheduler_file: Path,
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
    """
    argv = [
        sys.executable,
        "-m",
        "distributed.cli.dask_worker",
        "--scheduler-file",
        str(scheduler_file),
        "--nworkers",
        str(plan.workers),
        "--nthreads",
        str(plan.threads_per_worker),
        "--memory-limit",
        str(plan.memory_per_worker),
        "--name",
        "worker",
        "--nanny",
        "--no-dashboard",
    ]
    if settings.tls is not None:
        argv += ["--protocol", "tls"]
    env = {
        **dask_environment(settings),
        MULTIPROCESSING_METHOD: (environ or {}).get(MULTIPROCESSING_METHOD, "forkserver"),
    }
    return ProcessSpec("workers", tuple(argv), env)
