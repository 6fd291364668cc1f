"""Worker VMs end to end: `invoke launch --worker-vms 2` against the emulator, whose VMs are
containers on this host booting the real user-data; the real gcloud CLI, real Dask.

One launch serves the whole story (each VM costs this 2-core machine a container of Dask
processes): the cluster computes on three VMs, a certificate obtainable from the project
joins nothing, a VM outside the group gets no certificate, a worker VM deleted in the
middle of a computation is recreated and rejoins while the computation finishes, the group
resizes to 0 and back, and teardown leaves nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from distributed import Client
from test_gce import CALLER, _gcloud, _nothing_obtainable_connects, _private_keys, _settings

from conftest import daskbox
from daskbox.client.connection import connection_path, read_connection_file

pytestmark = [pytest.mark.docker, pytest.mark.slow]
ZONE = ("--zone", "us-central1-a")


def _by_value():
    # The VMs' processes cannot import this test module; local functions are shipped by
    # value (cloudpickle).
    def node() -> str:
        import os

        return os.environ.get("DASKBOX_NODE_NAME", "")

    def slow_square(x: int) -> int:
        import time

        time.sleep(0.5)
        return x * x

    return node, slow_square


_node, _slow_square = _by_value()


def _nodes(client: Client) -> dict[str, int]:
    """Workers per VM (each VM names its workers after itself)."""
    counts: dict[str, int] = {}
    for node in client.run(_node).values():
        counts[node] = counts.get(node, 0) + 1
    return counts


def _wait(condition, what: str, timeout: float = 240.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(1.0)
    raise AssertionError(f"timed out waiting for {what}")


def _members(env, group: str) -> list[str]:
    listed = _gcloud(
        env,
        "compute",
        "instance-groups",
        "managed",
        "list-instances",
        group,
        *ZONE,
        "--format",
        "json",
    )
    assert listed.returncode == 0, listed.stderr
    return sorted(item["instance"].rsplit("/", 1)[-1] for item in json.loads(listed.stdout))


def test_worker_vms_compute_rejoin_scale_and_tear_down(
    project, vm_image, emulator, gcloud_env, tmp_path
):
    instance = _settings(project)["instance"]
    group = f"{instance}-workers"
    launched = daskbox(
        project,
        gcloud_env,
        "launch",
        "--image",
        vm_image.reference,
        "--source-range",
        CALLER,
        "--worker-vms",
        "2",
        "--spot-workers",
        "--workers",
        "1",
        "--timeout",
        "400",
    )
    try:
        out = launched.stdout
        assert f"$ gcloud compute firewall-rules create {instance}-internal" in out
        assert f"$ gcloud compute instance-templates create {group}" in out
        assert f"$ gcloud compute instance-groups managed create {group}" in out
        connection = read_connection_file(connection_path(project, instance))
        assert connection.state == "ready"
        assert connection.extra["worker_group"] == group
        assert f"{instance}-internal" in connection.firewall_rules

        # What the API was asked: the internal rule admits the cluster's tags only; the
        # template carries an absolute deadline and Spot; the group leaves stopped VMs be.
        [internal] = [
            b
            for b in emulator.bodies("POST", r"global/firewalls$")
            if b["name"] == f"{instance}-internal"
        ]
        assert internal["sourceTags"] == [instance, group] and "sourceRanges" not in internal
        [template] = emulator.bodies("POST", r"global/instanceTemplates$")
        scheduling = template["properties"]["scheduling"]
        assert scheduling["provisioningModel"] == "SPOT" and scheduling["terminationTime"]
        assert scheduling["instanceTerminationAction"] == "DELETE"
        assert group in template["properties"]["tags"]["items"]
        assert instance not in template["properties"]["tags"]["items"]
        [manager] = emulator.bodies("POST", r"instanceGroupManagers$")
        assert manager["instanceLifecyclePolicy"]["defaultActionOnFailure"] == "DO_NOTHING"

        members = _members(gcloud_env, group)
        assert len(members) == 2
        security = connection.tls.security()
        with Client(connection.scheduler_address, security=security, timeout=30) as client:
            assert sorted(_nodes(client)) == sorted([instance, *members])
            assert sum(client.gather(client.map(_slow_square, range(12)))) == sum(
                x * x for x in range(12)
            )

        # The environment check covers every worker of every VM, counted per VM.
        # (The fixture image is not this test environment: differences are expected here.)
        checked = daskbox(project, gcloud_env, "check", check=False)
        counts = ", ".join(f"{name}: 1" for name in sorted([instance, *members]))
        assert f"scheduler and 3 workers on 3 VMs ({counts})" in checked.stdout + checked.stderr

        status = daskbox(project, gcloud_env, "status")
        assert group in status.stdout and "(worker group)" in status.stdout
        assert all(member in status.stdout for member in members)

        # No private key in the template, the instance descriptions, the guest attributes
        # (requests and certificates only) or gcloud's folder; nothing there connects.
        templates = _gcloud(
            gcloud_env, "compute", "instance-templates", "describe", group, "--format", "json"
        )
        described = [
            _gcloud(gcloud_env, "compute", "instances", "describe", name, *ZONE, "--format", "json")
            for name in (instance, *members)
        ]
        guests = [
            _gcloud(
                gcloud_env,
                "compute",
                "instances",
                "get-guest-attributes",
                name,
                *ZONE,
                "--format",
                "json",
            )
            for name in (instance, *members)
        ]
        for output in (templates, *described, *guests):
            assert output.returncode == 0, output.stderr
            assert _private_keys(output.stdout) == []
        assert "BEGIN CERTIFICATE REQUEST" in guests[1].stdout  # what a worker VM publishes
        for path in Path(gcloud_env["CLOUDSDK_CONFIG"]).rglob("*"):
            if path.is_file():
                assert _private_keys(path.read_text(errors="replace")) == [], path
        _nothing_obtainable_connects(
            connection,
            templates.stdout + described[0].stdout,
            "".join(guest.stdout for guest in guests),
            tmp_path,
        )

        # A VM outside the group publishing a request (a process on it can) gets nothing.
        rogue = _gcloud(
            gcloud_env,
            "compute",
            "instances",
            "create",
            f"{instance}-w-rogue",
            *ZONE,
            "--machine-type",
            "e2-small",
            "--image-project",
            "cos-cloud",
            "--image-family",
            "cos-stable",
            "--metadata",
            "enable-guest-attributes=TRUE",
            "--format",
            "json",
        )
        assert rogue.returncode == 0, rogue.stderr
        emulator.vm(f"{instance}-w-rogue").guest_attributes[("daskbox", "node-csr")] = emulator.vm(
            members[0]
        ).guest_attributes[("daskbox", "node-csr")]
        time.sleep(20)  # more than two rounds of the signer at its slowest
        signed = emulator.vm(instance).guest_attributes
        assert ("daskbox-certs", members[0]) in signed
        assert ("daskbox-certs", f"{instance}-w-rogue") not in signed
        _gcloud(
            gcloud_env, "compute", "instances", "delete", f"{instance}-w-rogue", *ZONE, "--quiet"
        )

        # A worker VM deleted mid-computation: the computation finishes, the group
        # recreates the VM (same name, new key, new certificate) and it rejoins.
        victim = members[0]
        old_id = emulator.instances[("test-project", "us-central1-a", victim)].resource["id"]
        with Client(connection.scheduler_address, security=security, timeout=30) as client:
            futures = client.map(_slow_square, range(40), pure=False)
            _wait(lambda: sum(f.done() for f in futures) >= 4, "the first results", 60)
            deleted = _gcloud(
                gcloud_env, "compute", "instances", "delete", victim, *ZONE, "--quiet"
            )
            assert deleted.returncode == 0, deleted.stderr
            assert sum(client.gather(futures)) == sum(x * x for x in range(40))

            def rejoined() -> bool:
                found = emulator.instances.get(("test-project", "us-central1-a", victim))
                recreated = found is not None and found.resource["id"] != old_id
                return recreated and _nodes(client).get(victim) == 1

            _wait(rejoined, f"{victim} to be recreated and rejoin")

            # Resize to 0 and back.
            daskbox(project, gcloud_env, "scale", "0")
            _wait(lambda: list(_nodes(client)) == [instance], "the worker VMs to go", 120)
            assert _members(gcloud_env, group) == []
            daskbox(project, gcloud_env, "scale", "2")
            _wait(lambda: len(_nodes(client)) == 3, "two new worker VMs to join")
            assert sum(client.gather(client.map(_slow_square, range(6)))) == 55
    finally:
        torn = daskbox(project, gcloud_env, "teardown", check=False)
    assert torn.returncode == 0, torn.stderr
    assert f"$ gcloud compute instance-groups managed delete {group}" in torn.stdout
    assert f"$ gcloud compute instance-templates delete {group}" in torn.stdout
    assert emulator.instances == {} and emulator.groups == {} and emulator.templates == {}
    assert emulator.firewalls == {}
    _wait(lambda: emulator.containers() == [], "every VM's containers to go", 30)
    assert not connection_path(project, instance).exists()
