"""Launch watches the boot: a VM whose cluster exits 2 at boot (here: its scheduler port is
already taken on the VM's host, which no preflight on the laptop can see) fails the launch
within seconds with the entrypoint's own line, and the launch deletes what it made
(``--keep-failed`` keeps it, saying how to delete it). The strict emulator boots the real
user-data; its metadata server holds the guest attributes the boot unit publishes."""

from __future__ import annotations

import io
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
import uuid

import pytest
from test_gce import CALLER, _settings

from conftest import DASKBOX, daskbox
from daskbox.client.connection import connection_path

pytestmark = [pytest.mark.docker, pytest.mark.slow]
FAILED = "daskbox.service: Failed with result 'exit-code' (2)."


def _launch_until_it_fails(project, env, emulator, image: str, *extra: str, failed=FAILED):
    """Run launch; return (its result, seconds from the VM's failure to launch's exit)."""
    instance = _settings(project)["instance"]
    failed_at: list[float] = []
    serial: list[str] = [""]
    done = threading.Event()

    def watch_serial() -> None:
        while not done.is_set() and not failed_at:
            vm = next(
                (i.vm for (_, _, name), i in emulator.instances.items() if name == instance), None
            )
            if vm is not None:
                serial[0] = vm.serial_output()
                if failed in serial[0]:
                    failed_at.append(time.monotonic())
            time.sleep(0.05)

    watcher = threading.Thread(target=watch_serial, daemon=True)
    watcher.start()
    argv = [
        str(DASKBOX),
        "launch",
        "--image",
        image,
        "--source-range",
        CALLER,
        "--timeout",
        "40",
        *extra,
    ]
    try:
        result = subprocess.run(
            argv, cwd=project, env=env, capture_output=True, text=True, timeout=400, check=False
        )
        ended = time.monotonic()
    finally:
        done.set()
        watcher.join()
    assert failed_at, f"the VM never failed:\n{serial[0]}\n{result.stdout}\n{result.stderr}"
    return result, ended - failed_at[0]


@pytest.fixture
def taken_scheduler_port(project):
    """Something else listens on the scheduler port on the VM's host (this machine)."""
    with socket.socket() as other:
        other.bind(("0.0.0.0", _settings(project)["scheduler-port"]))
        other.listen()
        yield _settings(project)["scheduler-port"]


def test_a_cluster_that_refuses_its_settings_fails_the_launch_in_seconds_leaving_nothing(
    project, vm_image, emulator, gcloud_env, taken_scheduler_port
):
    instance = _settings(project)["instance"]
    try:
        result, seconds = _launch_until_it_fails(project, gcloud_env, emulator, vm_image.reference)
    finally:
        if emulator.instances:
            daskbox(project, gcloud_env, "teardown", check=False)
    assert result.returncode == 1, result.stdout
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        f"error: the cluster on {instance} refused its settings: port "
        f"{taken_scheduler_port} (DASKBOX_SCHEDULER_PORT, the scheduler) "
        "is already in use"
    ), line
    assert "deleted" in line
    print(f"from the VM's exit 2 to launch's exit (cleanup included): {seconds:.1f} s")
    assert seconds < 10, seconds
    assert emulator.instances == {} and emulator.firewalls == {}
    assert emulator.containers() == []
    assert not connection_path(project, instance).exists()


def test_keep_failed_keeps_the_vm_and_says_how_to_delete_it(
    project, vm_image, emulator, gcloud_env, taken_scheduler_port
):
    instance = _settings(project)["instance"]
    try:
        result, seconds = _launch_until_it_fails(
            project, gcloud_env, emulator, vm_image.reference, "--keep-failed"
        )
        assert result.returncode == 1, result.stdout
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"error: the cluster on {instance} refused its settings: "), line
        assert f"`invoke teardown --instance {instance}`" in line
        assert seconds < 10, seconds
        # Kept for inspection: the VM, its rule and the record teardown finds them by.
        assert [name for (_, _, name) in emulator.instances] == [instance]
        assert emulator.firewalls != {}
        assert connection_path(project, instance).exists()
    finally:
        down = daskbox(project, gcloud_env, "teardown", "--instance", instance, check=False)
    assert down.returncode == 0, down.stderr
    assert emulator.instances == {} and emulator.firewalls == {}
    assert not connection_path(project, instance).exists()


def test_an_image_the_vm_cannot_pull_fails_the_launch_naming_it(
    project, vm_image, open_registry, emulator, gcloud_env, docker_client
):
    """The registry still lists the image (the preflight's check passes) but has lost one
    of its layers, so the VM's pull fails: a line naming the image and the registry's
    reason, and nothing left."""
    instance = _settings(project)["instance"]
    tag = f"{open_registry.host}/daskbox-gone-{uuid.uuid4().hex[:8]}:t"
    dockerfile = f"FROM {vm_image.pinned}\nRUN echo {uuid.uuid4().hex} > /tmp/one-of-a-kind\n"
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
    for line in docker_client.images.push(tag, stream=True, decode=True):
        assert "error" not in line, line
    repository, _ = tag.rsplit(":", 1)
    manifest = json.loads(
        urllib.request.urlopen(
            urllib.request.Request(
                f"http://{open_registry.host}/v2/{repository.split('/', 1)[1]}/manifests/t",
                headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
            )
        ).read()
    )
    docker_client.images.remove(tag)  # the engine must ask the registry for every layer
    layer = manifest["layers"][-1]["digest"].split(":")[1]
    blob = open_registry.storage / "docker/registry/v2/blobs/sha256" / layer[:2] / layer
    shutil.rmtree(blob)
    try:
        result, seconds = _launch_until_it_fails(
            project,
            gcloud_env,
            emulator,
            tag,
            failed="daskbox.service: Failed with result 'exit-code' (1).",
        )
    finally:
        if emulator.instances:
            daskbox(project, gcloud_env, "teardown", check=False)
    assert result.returncode == 1, result.stdout
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {instance} could not pull the image {repository}@sha256:")
    assert ": unknown blob" in line and "deleted" in line, line
    print(f"from the VM's failed pull to launch's exit (cleanup included): {seconds:.1f} s")
    assert seconds < 10, seconds
    assert emulator.instances == {} and emulator.firewalls == {}
    assert not connection_path(project, instance).exists()
