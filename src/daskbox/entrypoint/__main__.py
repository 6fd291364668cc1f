"""``python -m daskbox.entrypoint``: read settings and limits, print the plan, run the cluster.

One error boundary: a bad setting is one line on stderr and exit code 2, before anything
is started. ``--dry-run`` prints the plan and exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from daskbox.contract import ENTRYPOINT_ERROR_PREFIX, ENV_SCHEDULER_ADDRESS, EXIT_BAD_SETTINGS
from daskbox.entrypoint.stop import StopRequest


def _error(message: str, code: int) -> int:
    print(f"{ENTRYPOINT_ERROR_PREFIX}{message}", file=sys.stderr, flush=True)
    return code


def main(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] = os.environ,
    root: Path = Path("/"),
) -> int:
    """Run the entrypoint; returns the process exit code (0 stop, 1 crash, 2 bad settings)."""
    stop = StopRequest().catch()
    # Imported only once the stop signals are caught (see stop.py): these pull in dask.
    from daskbox.entrypoint.limits import read_limits
    from daskbox.entrypoint.ports import check_ports_free
    from daskbox.entrypoint.settings import SettingsError, read_settings
    from daskbox.entrypoint.sizing import plan_sizing, render_plan
    from daskbox.entrypoint.supervise import LogRelay, run_cluster

    parser = argparse.ArgumentParser(
        prog="python -m daskbox.entrypoint",
        description="Size and run a Dask scheduler and workers on this machine.",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the sizing plan and exit without starting"
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="worker mode: start only nannies and workers, joining this scheduler "
        "(e.g. tls://10.128.0.2:8786; same as DASKBOX_SCHEDULER_ADDRESS)",
    )
    args = parser.parse_args(argv)
    if args.scheduler:
        environ = {**environ, ENV_SCHEDULER_ADDRESS: args.scheduler}
    try:
        settings = read_settings(environ)
        limits = read_limits(root)
        plan = plan_sizing(limits, settings.overrides)
    except SettingsError as error:
        return _error(str(error), EXIT_BAD_SETTINGS)
    relay = LogRelay(sys.stdout.buffer, sys.stderr.buffer)
    for line in render_plan(limits, plan).splitlines():
        relay.say(line)
    if args.dry_run:
        return 0
    try:
        if not settings.worker_mode:  # a worker VM binds no fixed port
            check_ports_free(settings)
    except SettingsError as error:
        return _error(str(error), EXIT_BAD_SETTINGS)
    return run_cluster(settings, plan, relay, stop)


if __name__ == "__main__":
    raise SystemExit(main())
