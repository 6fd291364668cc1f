"""``invoke status`` rows from gcloud's JSON (the real-gcloud path is in test_gce.py)."""

from __future__ import annotations

import datetime

from daskbox.gcloud.status import ClusterRow, format_table, gce_rows, gce_status_rows

NOW = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.timezone.utc)


def _instance(name, status, started):
    return {
        "name": name,
        "zone": "https://compute.googleapis.com/compute/v1/projects/p/zones/us-central1-a",
        "machineType": ".../zones/us-central1-a/machineTypes/e2-highcpu-16",
        "status": status,
        "lastStartTimestamp": started,
        "networkInterfaces": [{"accessConfigs": [{"natIP": "198.51.100.4"}]}],
    }


def test_rows_show_zone_machine_status_uptime_ip():
    rows = gce_rows(
        [
            _instance("daskbox-a", "RUNNING", "2026-11-26T09:35:00.000-00:00"),
            _instance("daskbox-b", "TERMINATED", "2026-11-26T09:35:00.000-00:00"),
        ],
        NOW,
    )
    assert rows == [
        ClusterRow(
            "daskbox-a", "us-central1-a", "e2-highcpu-16", "RUNNING", "2h25m", "198.51.100.4"
        ),
        ClusterRow(
            "daskbox-b", "us-central1-a", "e2-highcpu-16", "TERMINATED", "-", "198.51.100.4"
        ),
    ]


def test_table_has_a_header_and_aligned_columns():
    table = format_table(
        [ClusterRow("daskbox-a", "local", "-", "running", "2 minutes", "127.0.0.1")]
    )
    header, row = table.splitlines()
    assert header.split() == ["NAME", "ZONE", "MACHINE_TYPE", "STATUS", "UPTIME", "EXTERNAL_IP"]
    assert header.index("ZONE") == row.index("local")


def _group(name: str, scheduler: str) -> dict[str, object]:
    return {
        "name": name,
        "zone": "https://compute.googleapis.com/compute/v1/projects/p/zones/us-central1-a",
        "selfLink": f"https://compute.googleapis.com/compute/v1/projects/p/zones/us-central1-a/instanceGroupManagers/{name}",
        "description": f"daskbox: worker VMs of {scheduler} (daskbox-project=app)",
        "targetSize": 1,
    }


def _member(name: str, group: str, status: str) -> dict[str, object]:
    created_by = f"projects/123/zones/us-central1-a/instanceGroupManagers/{group}"
    return {
        **_instance(name, status, "2026-11-26T11:00:00.000-00:00"),
        "metadata": {"items": [{"key": "created-by", "value": created_by}]},
    }


def test_a_worker_vm_whose_scheduler_is_gone_is_shown_orphaned():
    groups = [_group("gone-workers", "app-old"), _group("live-workers", "live")]
    instances = [
        _instance("live", "RUNNING", "2026-11-26T11:00:00.000-00:00"),
        _member("live-w-ab12", "live-workers", "RUNNING"),
        _member("gone-w-cd34", "gone-workers", "TERMINATED"),
    ]
    status = {row.name: row.status for row in gce_status_rows(instances, groups, NOW)}
    assert status["live-w-ab12"] == "RUNNING"
    assert status["gone-w-cd34"] == "TERMINATED (orphaned: scheduler app-old gone)"
    assert status["gone-workers"] == "1 VMs (orphaned: scheduler app-old gone)"
