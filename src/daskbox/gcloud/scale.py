"""``invoke scale N``: set the number of worker VMs of a launched cluster.

The group is the launch's (recorded in its connection file); resizing is one gcloud call.
New VMs boot, enrol with the scheduler VM's signer and join on their own; removed ones are
deleted by the group. 0 keeps the group (and its template) with no VM.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from daskbox._tasks import Progress
from daskbox.client.connection import find_connection_file, read_connection_file
from daskbox.errors import LaunchSpecError
from daskbox.gcloud import commands
from daskbox.gcloud._gcloud import run_gcloud
from daskbox.gcloud.defaults import MAX_WORKER_VMS


def scale(
    project_root: Path,
    size: int,
    *,
    instance: str | None = None,
    dry_run: bool = False,
    echo: Progress = print,
) -> list[str]:
    """Resize the worker group of ``instance`` (the project's only cluster by default) to
    ``size`` VMs; returns the gcloud command."""
    if not 0 <= size <= MAX_WORKER_VMS:
        raise LaunchSpecError(
            f"{size} worker VMs is invalid: expected 0 to {MAX_WORKER_VMS} (0 keeps the "
            "group with no VM)"
        )
    path = find_connection_file(project_root, instance)
    connection = read_connection_file(path)
    group = connection.extra.get("worker_group")
    if connection.target != "gce" or not group or not connection.project or not connection.zone:
        raise LaunchSpecError(
            f"{connection.instance} was launched without worker VMs: relaunch it with "
            "`invoke launch --worker-vms N` (after `invoke teardown`)"
        )
    argv = commands.group_resize(connection.project, connection.zone, str(group), size)
    if dry_run:
        echo(f"$ {shlex.join(argv)}")
        return argv
    run_gcloud(argv, echo)
    echo(
        f"{group}: {size} worker VM{'' if size == 1 else 's'}; new ones join once booted "
        "(`invoke status` lists them, `invoke check` counts workers per VM)"
    )
    return argv
