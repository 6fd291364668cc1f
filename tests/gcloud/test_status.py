"""``invoke status`` rows from gcloud's JSON (the real-gcloud path is in test_gce.py)."""

from __future__ import annotations

import datetime

from daskbox.gcloud.status import ClusterRow, format_table, gce_rows

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
