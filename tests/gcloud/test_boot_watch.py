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
from specs import FAKE_CLIENT_CA
from test_gce import CALLER, _settings

from conftest import DASKBOX, daskbox
from daskbox.client.connection import connection_path
from daskbox.gcloud import commands
from daskbox.gcloud._gcloud import run_gcloud
from daskbox.gcloud.boot_watch import BootFailed, BootWatcher
from daskbox.gcloud.cloud_init import render_worker_user_data
from daskbox.gcloud.settings import LaunchSettings
from daskbox.gcloud.spec import LaunchImage, build_spec

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


def _image_missing_a_layer(registry, base: str, docker_client) -> tuple[str, str]:
    """A new image in ``registry`` that still lists it (a preflight's check passes) but
    has lost its top layer, and that this engine does not hold: (tag, repository)."""
    tag = f"{registry.host}/daskbox-gone-{uuid.uuid4().hex[:8]}:t"
    dockerfile = f"FROM {base}\nRUN echo {uuid.uuid4().hex} > /tmp/one-of-a-kind\n"
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
    for line in docker_client.images.push(tag, stream=True, decode=True):
        assert "error" not in line, line
    repository, _ = tag.rsplit(":", 1)
    manifest = json.loads(
        urllib.request.urlopen(
            urllib.request.Request(
                f"http://{registry.host}/v2/{repository.split('/', 1)[1]}/manifests/t",
                headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
            )
        ).read()
    )
    docker_client.images.remove(tag)  # the engine must ask the registry for every layer
    layer = manifest["layers"][-1]["digest"].split(":")[1]
    shutil.rmtree(registry.storage / "docker/registry/v2/blobs/sha256" / layer[:2] / layer)
    return tag, repository


def test_an_image_the_vm_cannot_pull_fails_the_launch_naming_it(
    project, vm_image, open_registry, emulator, gcloud_env, docker_client
):
    """The registry still lists the image (the preflight's check passes) but has lost one
    of its layers, so the VM's pull fails: a line naming the image and the registry's
    reason, and nothing left."""
    instance = _settings(project)["instance"]
    tag, repository = _image_missing_a_layer(open_registry, vm_image.pinned, docker_client)
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


def test_a_worker_vm_whose_boot_fails_is_reported_by_the_watch(
    vm_image, open_registry, emulator, gcloud_env, docker_client, monkeypatch, tmp_path
):
    """Worker VMs report their boot too: the group daskbox creates (its real template and
    worker user-data) on an image the VMs cannot pull; the watch launch runs while it waits
    for the workers names the worker VM and the registry's reason."""
    tag, repository = _image_missing_a_layer(open_registry, vm_image.pinned, docker_client)
    digest = docker_client.images.get_registry_data(tag).id
    instance = f"daskbox-boot-{uuid.uuid4().hex[:6]}"
    settings = LaunchSettings(instance=instance, worker_vms=1, idle_timeout="0")
    image = LaunchImage(
        reference=f"{repository}@{digest}", lock_hash=vm_image.lock_hash, groups=("main",)
    )
    spec = build_spec(
        settings,
        project="test-project",
        project_name="demo",
        image=image,
        client_ca_pem=FAKE_CLIENT_CA,
        tls_days=2,
        ranges=(CALLER,),
        compute_api=emulator.base,
    )
    for key, value in gcloud_env.items():
        monkeypatch.setenv(key, value)
    user_data = tmp_path / "worker-user-data.yaml"
    user_data.write_text(render_worker_user_data(spec, FAKE_CLIENT_CA, "10.128.0.2"))
    assert spec.workers is not None
    run_gcloud(commands.template_create(spec, str(user_data)), None)
    run_gcloud(commands.group_create(spec), None)
    try:
        with BootWatcher(spec.project, spec.zone, instance, image.reference) as watch:
            watch.group = spec.workers.group
            deadline = time.monotonic() + 180
            while not watch.failed() and time.monotonic() < deadline:
                time.sleep(0.2)
        with pytest.raises(BootFailed, match=r": unknown blob$") as failed:
            watch.check()
    finally:
        run_gcloud(commands.group_delete(spec.project, spec.zone, spec.workers.group), None)
        run_gcloud(commands.template_delete(spec.project, spec.workers.template), None)
    assert str(failed.value).startswith(
        f"{spec.workers.base_instance_name}-"
    ) and f"could not pull the image {image.reference}" in str(failed.value)
