"""The emulator is as strict as the real API and as plain as a real VM: these tests drive
it with the real gcloud CLI (and raw HTTP where gcloud would never send a bad request),
with generic user-data that has nothing of daskbox in it."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from daskbox_services import docker_login, running_registry

# Drives invoke, poetry or gcloud: with the full suite, not the quick in-process runs.
pytestmark = pytest.mark.cli

GCLOUD_TESTS = Path(__file__).parent
EMULATOR_MODULES = ("emulator.py", "cos_vm.py", "cos_shims.py", "discovery.py", "gce_catalogue.py")
ZONE = "us-central1-a"


def _gcloud(env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["gcloud", *args], env=env, capture_output=True, text=True)


def _create(env, name: str, *flags: str, user_data: str | None = None, tmp_path=None):
    argv = [
        "compute",
        "instances",
        "create",
        name,
        "--zone",
        ZONE,
        "--image-project",
        "cos-cloud",
        "--format",
        "json",
        *flags,
    ]
    if "--machine-type" not in flags:
        argv += ["--machine-type", "e2-small"]
    if "--image-family" not in flags:
        argv += ["--image-family", "cos-stable"]
    if user_data is not None:
        path = tmp_path / f"{name}.yaml"
        path.write_text(user_data)
        argv += ["--metadata-from-file", f"user-data={path}"]
    return _gcloud(env, *argv)


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_no_daskbox_string_inside_the_emulator():
    """A generic model of Compute Engine and COS: it knows nothing of its client."""
    for name in EMULATOR_MODULES:
        text = (GCLOUD_TESTS / name).read_text()
        assert not re.search("daskbox", text, re.IGNORECASE), name


def test_request_bodies_are_checked_against_the_discovery_document(emulator):
    instances = f"{emulator.base}projects/p/zones/{ZONE}/instances"
    good = {
        "name": "vm",
        "machineType": f"zones/{ZONE}/machineTypes/e2-small",
        "disks": [
            {
                "boot": True,
                "initializeParams": {
                    "sourceImage": "projects/cos-cloud/global/images/family/cos-stable"
                },
            }
        ],
    }
    for body, message in [
        ({**good, "machineTyp": "x"}, "Unknown name \"machineTyp\" at 'resource'"),
        ({**good, "canIpForward": "yes"}, "'resource.canIpForward' (a boolean expected)"),
        (
            {**good, "scheduling": {"maxRunDuration": {"seconds": "8h"}}},
            "resource.scheduling.maxRunDuration.seconds",
        ),
        ({**good, "disks": [{"boot": True, "bogus": 1}]}, 'Unknown name "bogus"'),
        ({**good, "scheduling": {"provisioningModel": "CHEAP"}}, "is not one of"),
    ]:
        code, payload = _post(instances, body)
        assert code == 400 and message in payload["error"]["message"], payload
    code, payload = _post(f"{instances}?alt=json&bogusParam=1", good)
    assert code == 400 and "bogusParam" in payload["error"]["message"]
    code, payload = _post(f"{emulator.base}projects/p/zones/{ZONE}/instances/Bad_Name/stop", {})
    assert code == 400 and "Must be a match of regex" in payload["error"]["message"]
    assert emulator.instances == {}
    code, _ = _post(instances, good)
    assert code == 200


def test_two_emulators_never_give_the_same_instance_id(tmp_path):
    """The VMs' containers are named after the instance id (``vm<id>-...``): two emulators
    on one Docker engine (parallel test runs) must not hand out the same ids."""
    from emulator import ComputeEmulator

    body = {
        "name": "vm",
        "machineType": f"zones/{ZONE}/machineTypes/e2-small",
        "disks": [
            {
                "boot": True,
                "initializeParams": {
                    "sourceImage": "projects/cos-cloud/global/images/family/cos-stable"
                },
            }
        ],
    }
    ids = []
    for run in ("first", "second"):
        with ComputeEmulator(tmp_path / run, boot=False) as running:
            for name in ("vm", "vm-2"):
                code, _ = _post(
                    f"{running.base}projects/p/zones/{ZONE}/instances", {**body, "name": name}
                )
                assert code == 200
            ids += [instance.resource["id"] for instance in running.instances.values()]
    assert len(set(ids)) == 4, ids


def test_machine_types_and_images_come_from_the_catalogue(emulator, gcloud_env):
    emulator.boot = False
    offered = _create(
        gcloud_env, "arm", "--machine-type", "t2a-standard-4", "--image-family", "cos-arm64-stable"
    )
    assert offered.returncode == 0, offered.stderr
    wrong_arch = _create(gcloud_env, "mixed", "--machine-type", "c4a-standard-8")
    assert wrong_arch.returncode != 0
    assert (
        "Requested boot disk architecture (X86_64) is not compatible with machine type "
        "architecture (ARM64)" in wrong_arch.stderr
    )
    elsewhere = _gcloud(
        gcloud_env,
        "compute",
        "instances",
        "create",
        "far",
        "--zone",
        "us-east1-b",
        "--machine-type",
        "t2a-standard-4",
        "--image-project",
        "cos-cloud",
        "--image-family",
        "cos-arm64-stable",
    )
    assert "Machine type with name 't2a-standard-4' does not exist in zone 'us-east1-b'" in (
        elsewhere.stderr
    )
    big = _create(gcloud_env, "big", "--machine-type", "n2-standard-48")
    assert big.returncode == 0, big.stderr
    assert _create(gcloud_env, "huge", "--machine-type", "e2-standard-96").returncode != 0
    listed = _gcloud(
        gcloud_env,
        "compute",
        "machine-types",
        "describe",
        "c4a-highcpu-72",
        "--zone",
        ZONE,
        "--format",
        "json",
    )
    assert json.loads(listed.stdout)["architecture"] == "ARM64"
    assert sorted(name for (_, _, name) in emulator.instances) == ["arm", "big"]


def test_operations_are_asynchronous_and_can_fail_inside(emulator, gcloud_env):
    emulator.boot = False
    emulator.fail_operation(
        "instances.insert",
        "ZONE_RESOURCE_POOL_EXHAUSTED",
        "The zone does not have enough resources available.",
    )
    result = _create(gcloud_env, "unlucky")
    assert result.returncode != 0
    assert "does not have enough resources" in result.stderr
    assert emulator.instances == {}
    [operation] = [o for o in emulator.operations.values() if o["operationType"] == "insert"]
    assert operation["status"] == "DONE" and operation["error"]["errors"][0]["code"] == (
        "ZONE_RESOURCE_POOL_EXHAUSTED"
    )
    waits = [r for r in emulator.requests if r.path.endswith("/wait")]
    assert waits, "gcloud waited on the operation"


def test_the_external_ip_appears_after_some_polls(emulator, gcloud_env):
    emulator.boot = False
    created = _create(gcloud_env, "slow-ip")
    assert created.returncode == 0, created.stderr

    def nat() -> str | None:
        out = _gcloud(
            gcloud_env,
            "compute",
            "instances",
            "describe",
            "slow-ip",
            "--zone",
            ZONE,
            "--format",
            "json",
        ).stdout
        access = json.loads(out)["networkInterfaces"][0]["accessConfigs"][0]
        return access.get("natIP")

    assert "natIP" not in json.loads(created.stdout)[0]["networkInterfaces"][0]["accessConfigs"][0]
    assert nat() == "127.0.0.1"


def _cloud_config(**modules) -> str:
    return "#cloud-config\n" + yaml.safe_dump(modules)


def _serial(env, name: str) -> str:
    return _gcloud(
        env, "compute", "instances", "get-serial-port-output", name, "--zone", ZONE
    ).stdout


def _wait_for(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


@pytest.mark.docker
@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({"bootcmd": [["true"]]}, "cloud-config module 'bootcmd' is not modelled"),
        ({"runcmd": [["systemctl", "enable", "x.service"]]}, "runcmd line"),
        ({"runcmd": [["apt-get", "install", "-y", "curl"]]}, "runcmd line 'apt-get"),
        ({"write_files": [{"path": "/usr/bin/x", "content": "x"}]}, "read-only root"),
        (
            {"write_files": [{"path": "/etc/x", "owner": "app:app", "content": "x"}]},
            "the COS host has no such user",
        ),
    ],
)
def test_unknown_cloud_config_fails_the_boot(emulator, gcloud_env, tmp_path, config, reason):
    created = _create(gcloud_env, "strict", user_data=_cloud_config(**config), tmp_path=tmp_path)
    assert created.returncode == 0, created.stderr
    assert _wait_for(lambda: "boot failed" in _serial(gcloud_env, "strict"))
    assert reason in _serial(gcloud_env, "strict")


UNIT = """[Unit]
Description=pull and say hello
Wants=network-online.target gcr-online.target docker.service
After=network-online.target gcr-online.target docker.service

[Service]
Environment=HOME=/var/lib/app
{configure}ExecStartPre=/usr/bin/docker pull {image}
ExecStartPre=/usr/bin/curl --silent --show-error --fail --request PUT \
  --header "Metadata-Flavor: Google" --upload-file /etc/app/greeting \
  http://metadata.google.internal/computeMetadata/v1/instance/guest-attributes/app/greeting
ExecStart=/usr/bin/docker run --rm --name hello {image} true
RemainAfterExit=true
"""


def _hello(image: str, *, configure: str = "") -> str:
    return _cloud_config(
        write_files=[
            {
                "path": "/etc/systemd/system/hello.service",
                "content": UNIT.format(image=image, configure=configure),
            },
            {"path": "/etc/app/greeting", "content": "hello from the VM"},
        ],
        runcmd=[
            ["mkdir", "-p", "/var/lib/app"],
            ["systemctl", "daemon-reload"],
            ["systemctl", "start", "--no-block", "hello.service"],
        ],
    )


@pytest.fixture
def token_registry(emulator, tmp_path, base_image, docker_client):
    """A registry that accepts the emulated service account's token (as Artifact Registry
    accepts a VM's), holding a small image pushed with a login kept out of the VMs' way."""
    with running_registry(tmp_path / "registry", "_dcgcloud_token", emulator.access_token) as reg:
        login = tmp_path / "login"
        docker_login(reg, login)
        reference = f"{reg.host}/hello:1"
        docker_client.images.get(base_image).tag(reference)
        subprocess.run(
            ["docker", "--config", str(login), "push", reference], check=True, capture_output=True
        )
        digest = docker_client.images.get(reference).attrs["RepoDigests"][0].split("@")[1]
        yield reg, f"{reg.host}/hello@{digest}"
        docker_client.images.remove(reference)


@pytest.mark.docker
def test_a_vm_pulls_with_only_the_credentials_its_user_data_configures(
    emulator, gcloud_env, tmp_path, token_registry, registry_login
):
    """The host is logged in to the test registries (DOCKER_CONFIG): the VM does not see
    that. Without configuring docker-credential-gcr its pull is refused; with it, the
    service account's token from the metadata server gets the image."""
    registry, image = token_registry
    enable = ("--metadata", "enable-guest-attributes=TRUE", "--scopes", "storage-ro")
    bare = _create(gcloud_env, "bare", *enable, user_data=_hello(image), tmp_path=tmp_path)
    assert bare.returncode == 0, bare.stderr
    helper = "/usr/bin/docker-credential-gcr configure-docker --registries"
    configure = f"ExecStartPre={helper} {registry.host}\n"
    helped = _create(
        gcloud_env,
        "helped",
        *enable,
        user_data=_hello(image, configure=configure),
        tmp_path=tmp_path,
    )
    assert helped.returncode == 0, helped.stderr
    assert _wait_for(
        lambda: (
            "Deactivated successfully" in _serial(gcloud_env, "helped")
            or "no basic auth credentials" in _serial(gcloud_env, "bare")
        ),
        90,
    )
    assert _wait_for(lambda: "no basic auth credentials" in _serial(gcloud_env, "bare"), 90)
    assert _wait_for(lambda: "Deactivated successfully" in _serial(gcloud_env, "helped"), 90)
    greeting = _gcloud(
        gcloud_env,
        "compute",
        "instances",
        "get-guest-attributes",
        "helped",
        "--zone",
        ZONE,
        "--format",
        "json",
    )
    assert json.loads(greeting.stdout) == [
        {"namespace": "app", "key": "greeting", "value": "hello from the VM"}
    ]


@pytest.mark.docker
def test_guest_attributes_need_enabling_and_reboots_run_the_user_data_again(
    emulator, gcloud_env, tmp_path, token_registry
):
    """Guest attributes are writable only when enabled; stop and start wipe /etc (cloud-init
    writes it again) and keep /var."""
    registry, image = token_registry
    counter = _cloud_config(
        write_files=[{"path": "/etc/marker", "content": "written by cloud-init"}],
        runcmd=[["mkdir", "-p", "/var/lib/boots"], ["chmod", "0700", "/var/lib/boots"]],
    )
    created = _create(gcloud_env, "rebooted", user_data=counter, tmp_path=tmp_path)
    assert created.returncode == 0, created.stderr
    vm = emulator.vm("rebooted")
    assert _wait_for(lambda: (vm.root / "etc/marker").exists())
    (vm.root / "var/lib/boots/kept").write_text("state on /var")
    (vm.root / "etc/scratch").write_text("state on /etc")
    for verb in ("stop", "start"):
        result = _gcloud(gcloud_env, "compute", "instances", verb, "rebooted", "--zone", ZONE)
        assert result.returncode == 0, result.stderr
    assert _wait_for(lambda: vm.boots == 2 and (vm.root / "etc/marker").exists())
    assert not (vm.root / "etc/scratch").exists()
    assert (vm.root / "var/lib/boots/kept").read_text() == "state on /var"

    configure = (
        "ExecStartPre=/usr/bin/docker-credential-gcr configure-docker --registries "
        f"{registry.host}\n"
    )
    closed = _hello(image, configure=configure)  # no enable-guest-attributes metadata
    refused = _create(gcloud_env, "closed", user_data=closed, tmp_path=tmp_path)
    assert refused.returncode == 0
    assert _wait_for(lambda: "returned error: 403" in _serial(gcloud_env, "closed"))
