"""A worker VM whose scheduler VM is deleted mid-run powers off after orphan-timeout, the
group leaves it stopped (DO_NOTHING), `invoke status` shows it orphaned and `invoke
teardown` removes it: against the emulator, whose VMs boot the real user-data."""

from __future__ import annotations

import time

import pytest
from test_gce import CALLER, _gcloud, _settings
from test_worker_vms import ZONE, _members, _wait

from conftest import daskbox

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_a_worker_vm_without_its_scheduler_powers_off_and_stays_off(
    project, vm_image, emulator, gcloud_env
):
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + 'orphan-timeout = "15s"\n')
    instance = _settings(project)["instance"]
    group = f"{instance}-workers"
    daskbox(
        project,
        gcloud_env,
        "launch",
        "--image",
        vm_image.reference,
        "--source-range",
        CALLER,
        "--worker-vms",
        "1",
        "--workers",
        "1",
        "--timeout",
        "400",
    )
    try:
        [member] = _members(gcloud_env, group)
        deleted = _gcloud(gcloud_env, "compute", "instances", "delete", instance, *ZONE, "--quiet")
        assert deleted.returncode == 0, deleted.stderr

        def worker_status() -> str | None:
            found = [i for (_, _, name), i in emulator.instances.items() if name == member]
            status = found[0].resource["status"] if found else None
            return status if status == "TERMINATED" else None

        _wait(worker_status, "the orphaned worker VM to power off", 180)
        time.sleep(5)  # the group reconciles every 0.5 s: it must leave the VM stopped
        assert _members(gcloud_env, group) == [member]
        assert worker_status() == "TERMINATED"
        status = daskbox(project, gcloud_env, "status")
        [row] = [line for line in status.stdout.splitlines() if line.startswith(member)]
        assert f"TERMINATED (orphaned: scheduler {instance} gone)" in row
    finally:
        torn = daskbox(project, gcloud_env, "teardown", check=False)
    assert torn.returncode == 0, torn.stderr
    assert emulator.instances == {} and emulator.groups == {} and emulator.templates == {}
