"""List daskbox clusters so none is forgotten: Compute Engine instances and local containers."""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from daskbox.gcloud import commands
from daskbox.gcloud._gcloud import Echo, run_gcloud_json
from daskbox.gcloud.spec import CONTAINER_LABEL


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
    return url.rstrip("/").rsplit("/", 1)[-1]


def _uptime(started: str | None, now: datetime.datetime) -> str:
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


def local_rows() -> list[ClusterRow]:
    """Local daskbox containers (those carrying the instance label); none without Docker."""
    if shutil.which("docker") is None:
        return []
    result = subprocess.run(
        ["docker", "ps", "--all", "--filter", f"label={CONTAINER_LABEL}", "--format", "{{json .}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    rows = []
    for line in result.stdout.splitlines():
        item = json.loads(line)
        rows.append(
            ClusterRow(item["Names"], "local", "-", item["State"], item["RunningFor"], "127.0.0.1")
        )
    return rows


def format_table(rows: Sequence[ClusterRow]) -> str:
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


def gce_status(project: str, echo: Echo = print) -> list[ClusterRow]:
    """Query Compute Engine (one gcloud call) and return the rows."""
    instances = run_gcloud_json(commands.instance_list(project), echo) or []
    return gce_rows(instances, datetime.datetime.now(datetime.UTC))
