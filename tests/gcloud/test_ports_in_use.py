"""A dashboard port that something else holds: the local launch says which port, in one line,
instead of a dashboard URL that leads to the other service."""

from __future__ import annotations

import socket

import pytest

from conftest import daskbox
from daskbox.gcloud.local import container_state

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_a_taken_dashboard_port_fails_the_local_launch_naming_it(project, cluster_image):
    instance = next(
        line.split('"')[1] for line in (project / "pyproject.toml").read_text().splitlines()
        if line.startswith("instance")
    )  # fmt: skip
    with socket.socket() as other_service:
        other_service.bind(("127.0.0.1", 0))
        other_service.listen()
        port = other_service.getsockname()[1]
        launched = daskbox(
            project, None, "launch", "--local", "--image", cluster_image.reference,
            "--dashboard-port", str(port), "--timeout", "60", check=False,
        )  # fmt: skip
    assert launched.returncode == 1
    (line,) = launched.stderr.splitlines()
    assert line.startswith("error: ")
    assert f"port {port} (DASKBOX_DASHBOARD_PORT, the dashboard) is already in use" in line
    # nothing left behind: no container, no TLS folder, no connection file
    assert container_state(instance) is None
    assert not (project / ".daskbox" / f"{instance}.tls").exists()
    assert not (project / ".daskbox" / f"{instance}.json").exists()
