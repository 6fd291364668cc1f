"""The local target end to end: the VM's container on the local engine, over TLS."""

from __future__ import annotations

import json
import operator
import os
import stat
import subprocess

import pytest
from distributed import Client

from conftest import daskbox
from daskbox.client.connection import connection_path, read_connection_file
from daskbox.contract import IMAGE_UID as USER_ID

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _instance(project) -> str:
    return next(
        line.split('"')[1]
        for line in (project / "pyproject.toml").read_text().splitlines()
        if line.startswith("instance")
    )


def _container(name: str) -> dict | None:
    result = subprocess.run(
        ["docker", "container", "inspect", name], capture_output=True, text=True
    )
    return json.loads(result.stdout)[0] if result.returncode == 0 else None


def test_local_launch_connect_compute_teardown(project, cluster_image):
    instance = _instance(project)
    env = None
    try:
        launched = daskbox(project, env, "launch", "--local", "--image", cluster_image.reference)
        path = connection_path(project, instance)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        connection = read_connection_file(path)
        assert connection.target == "local"
        assert connection.lock_hash == cluster_image.lock_hash
        assert connection.groups == ("main",)
        assert connection.scheduler_address in launched.stdout
        assert launched.stdout.rstrip().endswith(
            f'    from daskbox import connect\n    client = connect("{instance}")'
        )
        assert connection.extras == ("tables",)

        # No other local user can reach the server key; the container's user can read it.
        private = project / ".daskbox" / f"{instance}.tls"
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
        key = (private / "server" / "server-key.pem").stat()
        if os.geteuid() == 0:
            assert (key.st_uid, stat.S_IMODE(key.st_mode)) == (USER_ID, 0o600)
        else:
            assert stat.S_IMODE(key.st_mode) == 0o644

        # Exactly the VM's settings: host network, restart policy, TLS mount, environment.
        container = _container(instance)
        assert container["HostConfig"]["NetworkMode"] == "host"
        assert container["HostConfig"]["RestartPolicy"] == {
            "Name": "on-failure",
            "MaximumRetryCount": 5,
        }
        env_vars = dict(item.split("=", 1) for item in container["Config"]["Env"])
        assert env_vars["DASKBOX_TLS_KEY_FILE"] == "/etc/daskbox/tls/server-key.pem"
        assert env_vars["DASKBOX_IDLE_TIMEOUT"] == "0"

        listed = daskbox(project, env, "status", "--local").stdout.splitlines()
        [row] = [line.split() for line in listed if line.startswith(instance)]
        assert row[1:4] == ["local", "-", "running"] and row[-1] == "127.0.0.1"

        with Client(
            connection.scheduler_address, security=connection.tls.security(), timeout=30
        ) as client:
            assert client.submit(operator.add, 20, 22).result() == 42
            assert sum(client.gather(client.map(operator.mul, range(10), range(10)))) == 285
    finally:
        down = daskbox(project, env, "teardown", "--local", check=False)
    assert down.returncode == 0, down.stderr
    assert _container(instance) is None
    assert not connection_path(project, instance).exists()
    assert not (project / ".daskbox" / f"{instance}.tls").exists()

    again = daskbox(project, env, "teardown", "--local")
    assert "nothing to delete" in again.stdout


def test_plain_connection_is_refused(project, cluster_image):
    """TLS is not optional: a client without the launch's certificate cannot connect."""
    instance = _instance(project)
    try:
        daskbox(project, None, "launch", "--local", "--image", cluster_image.reference)
        connection = read_connection_file(connection_path(project, instance))
        plain = connection.scheduler_address.replace("tls://", "tcp://")
        with pytest.raises(OSError):
            Client(plain, timeout=3)
    finally:
        daskbox(project, None, "teardown", "--local", check=False)


def test_missing_docker_cli_is_one_line_and_leaves_nothing(project, cluster_image, tmp_path):
    """The engine answers (image found through the API) but `docker run` has no CLI."""
    instance = _instance(project)
    result = daskbox(
        project,
        {"PATH": str(tmp_path)},
        "launch",
        "--local",
        "--image",
        cluster_image.reference,
        check=False,
    )
    assert result.returncode == 1
    [message] = result.stderr.strip().splitlines()
    assert (
        message
        == "error: the docker CLI is not installed (not on PATH): install Docker to use --local"
    )
    assert _container(instance) is None
    assert not (project / ".daskbox" / f"{instance}.tls").exists()


def test_bad_settings_stop_the_local_launch_without_a_restart_loop(project, cluster_image):
    """What only the container can tell (memory it does not have) is refused by the
    entrypoint's own --dry-run in the same set-up: exit 2, its line, nothing started."""
    instance = _instance(project)
    result = daskbox(
        project,
        None,
        "launch",
        "--local",
        "--image",
        cluster_image.reference,
        "--workers",
        "2",
        "--memory-per-worker",
        "4TiB",
        check=False,
    )
    assert result.returncode == 1
    [message] = result.stderr.strip().splitlines()
    assert message.startswith("error: the cluster would not start: daskbox entrypoint: ")
    assert "MEMORY_PER_WORKER" in message
    assert "--dry-run" in result.stdout and "--detach" not in result.stdout
    assert _container(instance) is None
    assert not (project / ".daskbox").exists() or not list((project / ".daskbox").iterdir())


def test_interrupted_local_launch_rolls_back(project, cluster_image):
    """Ctrl-C while the container starts: one line, the container, its TLS folder and the
    record are removed, nothing is left."""
    import signal
    import time

    from conftest import DASKBOX

    instance = _instance(project)
    process = subprocess.Popen(
        [str(DASKBOX), "launch", "--local", "--image", cluster_image.reference],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("waiting for the scheduler"):
            break
    time.sleep(0.3)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert stderr.strip() == (
        f"interrupted: rolled back the local launch of {instance} (container, TLS folder, "
        "record); nothing is left"
    )
    assert _container(instance) is None
    assert not list((project / ".daskbox").iterdir())
