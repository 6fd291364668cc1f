"""A dashboard port that something else holds: the local launch says which port, in one line,
instead of a dashboard URL that leads to the other service."""

from __future__ import annotations

import socket
import time
import uuid

import docker
import pytest

from conftest import daskbox
from daskbox.contract import ENTRYPOINT_ERROR_PREFIX
from daskbox.gcloud.local import _logs_tail, container_state

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_a_taken_dashboard_port_fails_the_local_launch_naming_it(project, cluster_image):
    instance = next(
        line.split('"')[1]
        for line in (project / "pyproject.toml").read_text().splitlines()
        if line.startswith("instance")
    )
    with socket.socket() as other_service:
        other_service.bind(("127.0.0.1", 0))
        other_service.listen()
        port = other_service.getsockname()[1]
        launched = daskbox(
            project,
            None,
            "launch",
            "--local",
            "--image",
            cluster_image.reference,
            "--dashboard-port",
            str(port),
            "--timeout",
            "60",
            check=False,
        )
    assert launched.returncode == 1
    (line,) = launched.stderr.splitlines()
    assert line.startswith("error: ")
    assert f"port {port} (DASKBOX_DASHBOARD_PORT, the dashboard) is already in use" in line
    # nothing left behind: no container, no TLS folder, no connection file
    assert container_state(instance) is None
    assert not (project / ".daskbox" / f"{instance}.tls").exists()
    assert not (project / ".daskbox" / f"{instance}.json").exists()


def test_the_error_quoted_is_the_entrypoints_even_after_a_restarted_run_began_writing(
    cluster_image,
):
    """Under ``--restart on-failure`` the next run's first lines can follow the error that
    ended the last run by the time launch reads the logs (a CI run quoted only plan lines)."""
    name = f"daskbox-logs-{uuid.uuid4().hex[:8]}"
    error = f"{ENTRYPOINT_ERROR_PREFIX}port 8787 (DASKBOX_DASHBOARD_PORT) is already in use"
    script = (  # one stream, so that Docker keeps the order of the lines
        'exec 1>&2; echo "entrypoint | decided workers 2"; '
        f'echo "{error}"; '
        'echo "entrypoint | decided workers 2"; echo "entrypoint | decided threads 1"; '
        "sleep 600"
    )
    client = docker.from_env()
    container = client.containers.run(
        cluster_image.reference,
        ["-c", script],
        entrypoint=["sh"],
        name=name,
        detach=True,
        network_mode="none",
    )
    try:
        deadline = time.monotonic() + 30
        while b"decided threads" not in container.logs() and time.monotonic() < deadline:
            time.sleep(0.1)
        quoted = _logs_tail(name, 3)
        assert quoted.endswith(error), quoted
        assert quoted.startswith("entrypoint | decided workers 2 | ")
        assert container_state(name) != "running"  # killed: the logs no longer move
    finally:
        container.remove(force=True)
