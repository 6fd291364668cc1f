"""Instance templates and managed instance groups in the emulator, driven by the real gcloud
CLI: create, resize, list-instances, delete; the group recreates a deleted VM (same name),
leaves a stopped one stopped with the do-nothing failure action, and refuses what the API
refuses (a template in use, a termination time in the past, an unknown body field)."""

from __future__ import annotations

import datetime
import json
import time

import pytest
from test_emulator import ZONE, _gcloud, _post

# Drives invoke, poetry or gcloud: with the full suite, not the quick in-process runs.
pytestmark = pytest.mark.cli


def _template(env, name: str, *flags: str):
    return _gcloud(
        env,
        "compute",
        "instance-templates",
        "create",
        name,
        "--machine-type",
        "e2-small",
        "--image-project",
        "cos-cloud",
        "--image-family",
        "cos-stable",
        "--labels",
        "team=blue",
        "--metadata",
        "enable-guest-attributes=TRUE",
        "--format",
        "json",
        *flags,
    )


def _members(env, group: str) -> list[dict]:
    listed = _gcloud(
        env,
        "compute",
        "instance-groups",
        "managed",
        "list-instances",
        group,
        "--zone",
        ZONE,
        "--format",
        "json",
    )
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


def _wait_for(condition, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.2)
    raise AssertionError("timed out")


def _running(emulator, prefix: str) -> list[str]:
    return sorted(
        name
        for (_, _, name), instance in list(emulator.instances.items())
        if name.startswith(prefix) and instance.resource["status"] == "RUNNING"
    )


def test_group_creates_resizes_recreates_and_deletes(emulator, gcloud_env):
    emulator.boot = False
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    made = _template(
        gcloud_env,
        "tpl",
        "--provisioning-model",
        "SPOT",
        "--termination-time",
        later.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "--instance-termination-action",
        "DELETE",
    )
    assert made.returncode == 0, made.stderr
    created = _gcloud(
        gcloud_env,
        "compute",
        "instance-groups",
        "managed",
        "create",
        "grp",
        "--zone",
        ZONE,
        "--template",
        "tpl",
        "--size",
        "2",
        "--base-instance-name",
        "node",
        "--default-action-on-vm-failure",
        "do-nothing",
        "--format",
        "json",
    )
    assert created.returncode == 0, created.stderr
    [body] = emulator.bodies("POST", r"instanceGroupManagers$")
    assert body["instanceLifecyclePolicy"]["defaultActionOnFailure"] == "DO_NOTHING"

    names = _wait_for(lambda: len(_running(emulator, "node-")) == 2 and _running(emulator, "node-"))
    instance = emulator.instances[("test-project", ZONE, names[0])].resource
    assert instance["labels"] == {"team": "blue"}  # made from the template
    assert instance["scheduling"]["provisioningModel"] == "SPOT"
    assert sorted(m["instance"].rsplit("/", 1)[-1] for m in _members(gcloud_env, "grp")) == names
    listed = _gcloud(
        gcloud_env, "compute", "instance-groups", "managed", "list", "--format", "json"
    )
    assert listed.returncode == 0, listed.stderr
    [shown] = json.loads(listed.stdout)
    assert (shown["name"], shown["targetSize"], int(shown["size"])) == ("grp", 2, 2)

    # A VM deleted by hand is recreated, with the same name.
    deleted = _gcloud(
        gcloud_env, "compute", "instances", "delete", names[0], "--zone", ZONE, "--quiet"
    )
    assert deleted.returncode == 0, deleted.stderr
    first_id = instance["id"]

    def recreated() -> bool:
        found = emulator.instances.get(("test-project", ZONE, names[0]))
        return (
            found is not None
            and found.resource["id"] != first_id
            and (found.resource["status"] == "RUNNING")
        )

    _wait_for(recreated)

    # A VM that stopped by itself stays stopped (do-nothing), and still counts.
    stopped = _gcloud(gcloud_env, "compute", "instances", "stop", names[1], "--zone", ZONE)
    assert stopped.returncode == 0, stopped.stderr
    time.sleep(1.5)  # three rounds of the group
    assert emulator.instances[("test-project", ZONE, names[1])].resource["status"] == "TERMINATED"
    assert len(_members(gcloud_env, "grp")) == 2

    for size, expected in ((0, 0), (3, 3)):
        resized = _gcloud(
            gcloud_env,
            "compute",
            "instance-groups",
            "managed",
            "resize",
            "grp",
            "--zone",
            ZONE,
            "--size",
            str(size),
        )
        assert resized.returncode == 0, resized.stderr
        _wait_for(
            lambda n=expected: (
                (len(_members(gcloud_env, "grp")) == n and len(_running(emulator, "node-")) == n)
                or (n == 0 and not any(k[2].startswith("node-") for k in emulator.instances))
            )
        )

    in_use = _gcloud(gcloud_env, "compute", "instance-templates", "delete", "tpl", "--quiet")
    assert in_use.returncode != 0 and "already being used" in in_use.stderr
    gone = _gcloud(
        gcloud_env,
        "compute",
        "instance-groups",
        "managed",
        "delete",
        "grp",
        "--zone",
        ZONE,
        "--quiet",
    )
    assert gone.returncode == 0, gone.stderr
    assert not any(name.startswith("node-") for (_, _, name) in emulator.instances)
    assert (
        _gcloud(gcloud_env, "compute", "instance-templates", "delete", "tpl", "--quiet").returncode
        == 0
    )
    assert emulator.templates == {} and emulator.groups == {}


def test_templates_are_checked_like_instances(emulator, gcloud_env):
    emulator.boot = False
    past = _template(
        gcloud_env,
        "late",
        "--termination-time",
        "2020-01-01T00:00:00Z",
        "--instance-termination-action",
        "DELETE",
    )
    assert past.returncode != 0 and "Termination time must be in the future" in past.stderr
    code, answer = _post(
        f"{emulator.base}projects/test-project/global/instanceTemplates",
        {"name": "odd", "properties": {"machineType": "e2-small", "colour": "blue"}},
    )
    assert code == 400 and "colour" in answer["error"]["message"]
    code, answer = _post(
        f"{emulator.base}projects/test-project/zones/{ZONE}/instanceGroupManagers",
        {"name": "orphan", "instanceTemplate": "global/instanceTemplates/none", "targetSize": 1},
    )
    assert code != 200
    assert emulator.templates == {} and emulator.groups == {}


def test_a_named_teardown_without_its_file_deletes_the_worker_group_and_template(
    emulator, gcloud_env, project
):
    """What a launch with worker VMs left when its connection file is gone: `teardown
    --instance NAME` derives the group's and template's names from the instance."""
    from conftest import daskbox
    from daskbox.gcloud.spec import worker_group_names

    emulator.boot = False
    names = worker_group_names("daskbox-lost")
    assert _template(gcloud_env, names.template).returncode == 0
    created = _gcloud(
        gcloud_env,
        "compute",
        "instance-groups",
        "managed",
        "create",
        names.group,
        "--zone",
        ZONE,
        "--template",
        names.template,
        "--size",
        "1",
        "--base-instance-name",
        names.base_instance_name,
    )
    assert created.returncode == 0, created.stderr
    _wait_for(lambda: _running(emulator, names.base_instance_name))
    result = daskbox(project, gcloud_env, "teardown", "--instance", "daskbox-lost")
    assert "instance daskbox-lost was already gone" in result.stdout
    assert emulator.instances == {}
    listed = _gcloud(gcloud_env, "compute", "instance-templates", "list", "--format", "json")
    assert json.loads(listed.stdout) == []
    groups = _gcloud(
        gcloud_env, "compute", "instance-groups", "managed", "list", "--format", "json"
    )
    assert json.loads(groups.stdout) == []
