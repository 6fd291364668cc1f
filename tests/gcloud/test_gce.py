"""Compute Engine end to end: the real gcloud CLI against the emulator, which boots the
container from the instance's real user-data / container declaration on local Docker."""

from __future__ import annotations

import operator
import stat
import time

import pytest
import yaml
from distributed import Client

from conftest import daskbox
from daskbox.client.connection import connection_path, read_connection_file
from daskbox.contract import IMAGE_UID as USER_ID

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CALLER = "203.0.113.7/32"


def _settings(project) -> dict:
    import tomllib

    return tomllib.loads((project / "pyproject.toml").read_text())["tool"]["daskbox"]["gcloud"]


@pytest.mark.parametrize("method", ["cloud-init", "container-declaration"])
def test_launch_connect_compute_teardown(method, project, cluster_image, emulator, gcloud_env):
    settings = _settings(project)
    instance = settings["instance"]
    launched = daskbox(
        project, gcloud_env, "launch", "--image", cluster_image.reference, "--method", method,
        "--source-range", CALLER, "--spot",
    )  # fmt: skip
    try:
        verb = "create" if method == "cloud-init" else "create-with-container"
        assert f"$ gcloud compute instances {verb} {instance}" in launched.stdout
        assert "$ gcloud compute firewall-rules create" in launched.stdout
        if method == "container-declaration":
            assert "31 July 2026" in launched.stdout

        path = connection_path(project, instance)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        connection = read_connection_file(path)
        assert connection.scheduler_address == f"tls://127.0.0.1:{settings['scheduler-port']}"
        assert connection.image == cluster_image.pinned
        assert (connection.project, connection.zone) == ("test-project", "us-central1-a")
        assert connection.lock_hash == cluster_image.lock_hash
        assert connection.extras == ("tables",)  # from the image's labels
        assert connection.scheduler_address in launched.stdout
        assert connection.dashboard_url in launched.stdout
        assert launched.stdout.rstrip().endswith(
            f'    from daskbox import connect\n    client = connect("{instance}")'
        )
        # Every gcloud command is printed before it runs, the firewall lookup too.
        assert "$ gcloud compute firewall-rules describe daskbox-allow-tcp-" in launched.stdout

        # On the "VM": the server key belongs to the image's user, readable by it only.
        [vm] = emulator.instances.values()
        key = (vm.root / "etc/daskbox/tls/server-key.pem").stat()
        assert (key.st_uid, stat.S_IMODE(key.st_mode)) == (USER_ID, 0o600)

        # What gcloud sent: the recorded request bodies.
        [body] = emulator.bodies("POST", r"zones/us-central1-a/instances$")
        assert body["name"] == instance
        assert body["machineType"].endswith("/zones/us-central1-a/machineTypes/e2-highcpu-16")
        source_image = body["disks"][0]["initializeParams"]["sourceImage"]
        assert "projects/cos-cloud/" in source_image and "cos-stable" in source_image
        assert body["scheduling"]["provisioningModel"] == "SPOT"
        assert body["scheduling"]["maxRunDuration"] == {"seconds": str(8 * 3600)}
        assert body["scheduling"]["instanceTerminationAction"] == "DELETE"
        assert sorted(body["serviceAccounts"][0]["scopes"]) == [
            "https://www.googleapis.com/auth/devstorage.read_only",
            "https://www.googleapis.com/auth/logging.write",
        ]
        assert body["labels"]["daskbox"] == "managed"
        assert body["labels"]["daskbox-lock"] == cluster_image.lock_hash[:16]
        assert body["tags"]["items"] == ["daskbox"]
        metadata = {item["key"]: item["value"] for item in body["metadata"]["items"]}
        user_data = yaml.safe_load(metadata["user-data"])
        pems = {item["path"]: item["content"] for item in user_data["write_files"]}
        assert "PRIVATE KEY" in pems["/etc/daskbox/tls/server-key.pem"]
        # The server key reached the VM, the client key stayed here, and they differ.
        assert pems["/etc/daskbox/tls/server-key.pem"] != connection.tls.key_pem
        assert pems["/etc/daskbox/tls/ca.pem"] == connection.tls.ca_pem
        if method == "cloud-init":
            [run] = [argv for argv in user_data["runcmd"] if "run" in argv and "docker" in argv]
            assert run[-1] == cluster_image.pinned
            assert run[run.index("--network") : run.index("--network") + 2] == ["--network", "host"]
        else:
            declaration = yaml.safe_load(metadata["gce-container-declaration"])
            container = declaration["spec"]["containers"][0]
            assert container["image"] == cluster_image.pinned
            assert declaration["spec"]["restartPolicy"] == "OnFailure"

        [rule] = emulator.bodies("POST", r"global/firewalls$")
        assert rule["sourceRanges"] == [CALLER]
        assert rule["targetTags"] == ["daskbox"]
        assert rule["allowed"][0]["IPProtocol"] == "tcp"

        with Client(
            connection.scheduler_address, security=connection.tls.security(), timeout=30
        ) as client:
            assert client.submit(operator.add, 20, 22).result() == 42

        status = daskbox(project, gcloud_env, "status")
        assert instance in status.stdout and "RUNNING" in status.stdout
        assert "e2-highcpu-16" in status.stdout and "127.0.0.1" in status.stdout
    finally:
        down = daskbox(project, gcloud_env, "teardown", check=False)
    assert down.returncode == 0, down.stderr
    assert "$ gcloud compute instances delete" in down.stdout
    assert "$ gcloud compute instances list" in down.stdout  # is the rule still used?
    assert emulator.instances == {}
    assert emulator.firewalls == {}
    assert emulator.containers() == []
    assert not connection_path(project, instance).exists()

    again = daskbox(project, gcloud_env, "teardown")
    assert "nothing to delete" in again.stdout


@pytest.mark.parametrize("method", ["cloud-init", "container-declaration"])
def test_idle_vm_powers_itself_off(method, project, cluster_image, emulator, gcloud_env):
    """The entrypoint exits 0 after its idle timeout; the VM's watcher powers it off,
    whether cloud-init or konlet (named klt-<instance>-...) started the container."""
    instance = _settings(project)["instance"]
    daskbox(
        project, gcloud_env, "launch", "--image", cluster_image.reference, "--method", method,
        "--source-range", CALLER, "--idle-timeout", "20s",  # launch must see it first
    )  # fmt: skip
    try:
        [vm] = emulator.instances.values()
        if method == "container-declaration":
            assert vm.container.startswith(f"klt-{instance}-")
        deadline = time.monotonic() + 90
        while vm.resource["status"] == "RUNNING" and time.monotonic() < deadline:
            time.sleep(1)
        status = daskbox(project, gcloud_env, "status")
        line = next(line for line in status.stdout.splitlines() if line.startswith(instance))
        assert "TERMINATED" in line
    finally:
        daskbox(project, gcloud_env, "teardown", check=False)
    assert emulator.containers() == []


def test_unreachable_vm_is_reported_kept_and_shares_the_rule(
    project, cluster_image, emulator, gcloud_env
):
    """A VM that never answers: launch fails naming the serial port output and teardown;
    the firewall rule stays while that VM exists and goes with the last daskbox VM."""
    first = _settings(project)["instance"]
    second = f"{first}-b"
    common = ("--image", cluster_image.reference, "--source-range", CALLER)
    daskbox(project, gcloud_env, "launch", *common)
    try:
        emulator.boot = False  # the second VM's container never starts
        failed = daskbox(
            project, gcloud_env, "launch", *common, "--instance", second, "--timeout", "4",
            check=False,
        )  # fmt: skip
        assert failed.returncode == 1
        [message] = failed.stderr.strip().splitlines()
        assert "did not answer within 4 s" in message
        assert f"gcloud compute instances get-serial-port-output {second}" in message
        assert "invoke teardown" in message
        assert len(emulator.instances) == 2 and len(emulator.firewalls) == 1

        kept = daskbox(project, gcloud_env, "teardown", "--instance", first)
        assert "keeping firewall rule" in kept.stdout
        assert len(emulator.firewalls) == 1
        daskbox(project, gcloud_env, "teardown", "--instance", second)
        assert emulator.firewalls == {} and emulator.instances == {}
    finally:
        for name in (first, second):
            daskbox(project, gcloud_env, "teardown", "--instance", name, check=False)
    assert emulator.containers() == []
