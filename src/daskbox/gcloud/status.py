"""List daskbox clusters so none is forgotten: Compute Engine instances and local containers."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors

from daskbox._tasks import Progress
from daskbox.contract import CONTAINER_LABEL
from daskbox.errors import GcloudError
from daskbox.gcloud import commands
from daskbox.gcloud._gcloud import parse_json, run_gcloud_all
from daskbox.gcloud.spec import owner_of

GROUP_MACHINE_TYPE = "(worker group)"  # a group's row in the table


@dataclass(frozen=True)
class ClusterRow:
    """One line of ``invoke status``."""

    name: str
    zone: str
    machine_type: str
    status: str
    uptime: str
    external_ip: str


def _last(url: str) -> str:
    """The last path segment of an API URL: ``.../zones/us-central1-a`` -> ``us-central1-a``."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def _uptime(started: str | None, now: datetime.datetime) -> str:
    """``"2h05m"`` since the ISO timestamp ``started``, or ``"-"`` without one."""
    if not started:
        return "-"
    seconds = int((now - datetime.datetime.fromisoformat(started)).total_seconds())
    hours, rest = divmod(max(seconds, 0), 3600)
    return f"{hours}h{rest // 60:02d}m"


def gce_rows(instances: Sequence[dict[str, Any]], now: datetime.datetime) -> list[ClusterRow]:
    """Rows from ``instances list --format json`` output (pure)."""
    rows = []
    for item in instances:
        running = item.get("status") == "RUNNING"
        started = item.get("lastStartTimestamp") or item.get("creationTimestamp")
        ips = [
            access.get("natIP", "")
            for interface in item.get("networkInterfaces", [])
            for access in interface.get("accessConfigs", [])
        ]
        rows.append(
            ClusterRow(
                name=item.get("name", "?"),
                zone=_last(item.get("zone", "?")),
                machine_type=_last(item.get("machineType", "?")),
                status=item.get("status", "?"),
                uptime=_uptime(started, now) if running else "-",
                external_ip=next((ip for ip in ips if ip), "-"),
            )
        )
    return rows


def local_rows(now: datetime.datetime | None = None) -> list[ClusterRow]:
    """Local daskbox containers (those carrying the instance label); none without Docker."""
    try:
        client = docker.from_env()
        containers = client.containers.list(all=True, filters={"label": CONTAINER_LABEL})
    except docker.errors.DockerException:
        return []
    now = now or datetime.datetime.now(datetime.timezone.utc)
    rows = []
    for container in containers:
        running = container.status == "running"
        # The engine gives nanoseconds; fromisoformat takes at most microseconds.
        started = str(container.attrs.get("State", {}).get("StartedAt", ""))[:26].rstrip("Z")
        rows.append(
            ClusterRow(
                name=str(container.name),
                zone="local",
                machine_type="-",
                status=str(container.status),
                uptime=_uptime(started + "+00:00", now) if running and started else "-",
                external_ip="127.0.0.1",
            )
        )
    return rows


def format_table(rows: Sequence[ClusterRow]) -> str:
    """The rows under a header, as left-aligned columns."""
    header = ClusterRow("NAME", "ZONE", "MACHINE_TYPE", "STATUS", "UPTIME", "EXTERNAL_IP")
    table = [header, *rows]
    columns = list(zip(*(vars(row).values() for row in table), strict=True))
    widths = [max(len(str(cell)) for cell in column) for column in columns]
    lines = [
        "  ".join(
            str(cell).ljust(width) for cell, width in zip(vars(row).values(), widths, strict=True)
        )
        for row in table
    ]
    return "\n".join(line.rstrip() for line in lines)


def group_rows(groups: Sequence[dict[str, Any]]) -> list[ClusterRow]:
    """Rows of worker groups from ``instance-groups managed list --format json`` (pure):
    the target size as status (the group's VMs are listed as instances)."""
    return [
        ClusterRow(
            name=str(item.get("name", "?")),
            zone=_last(str(item.get("zone", "?"))),
            machine_type=GROUP_MACHINE_TYPE,
            status=f"{item.get('targetSize', '?')} VMs",
            uptime="-",
            external_ip="-",
        )
        for item in groups
    ]


def gce_status(project: str, echo: Progress = print) -> list[ClusterRow]:
    """Query Compute Engine (instances and worker groups, side by side) and return the rows:
    each worker group right before its VMs."""
    argvs = [commands.instance_list(project), commands.group_list(project)]
    results = run_gcloud_all(argvs, echo)
    for result in results:
        if isinstance(result, GcloudError):
            raise result
    instances, groups = (parse_json(a, str(r)) or [] for a, r in zip(argvs, results, strict=True))
    return gce_status_rows(instances, groups, datetime.datetime.now(datetime.timezone.utc))


def gce_status_rows(
    instances: Sequence[dict[str, Any]], groups: Sequence[dict[str, Any]], now: datetime.datetime
) -> list[ClusterRow]:
    """Group rows, then instance rows (pure); a worker group whose scheduler VM is gone, and
    each of its VMs (found by the ``created-by`` metadata Compute Engine gives a group's
    VMs), is marked orphaned: ``invoke teardown`` removes it."""
    present = {str(item.get("name", "")) for item in instances}
    gone = {
        str(group.get("name", "")): owner_of(str(group.get("description", "")))
        for group in groups
        if owner_of(str(group.get("description", ""))) not in present
    }
    members = {str(item.get("name", "")): _creator(item) for item in instances}
    rows = []
    for row in group_rows(groups) + gce_rows(instances, now):
        group = row.name if row.machine_type == GROUP_MACHINE_TYPE else members.get(row.name, "")
        if group in gone:
            status = f"{row.status} (orphaned: scheduler {gone[group]} gone)"
            row = dataclasses.replace(row, status=status)
        rows.append(row)
    return rows


def _creator(instance: dict[str, Any]) -> str:
    """The managed instance group that created ``instance`` ("" for none)."""
    for item in (instance.get("metadata") or {}).get("items") or []:
        if item.get("key") == "created-by":
            return _last(str(item.get("value", "")))
    return ""
