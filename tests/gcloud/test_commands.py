"""gcloud argv lists, pinned by golden files; they are lists, never shell strings."""

from __future__ import annotations

import shlex

import pytest
from golden_files import assert_golden
from specs import fixed_spec

from daskbox.gcloud import commands


def _lines(argv: list[str]) -> str:
    return shlex.join(argv) + "\n"


def test_instance_create_cloud_init_spot():
    spec = fixed_spec(spot=True)
    assert_golden(
        "instances-create-cloud-init.txt", _lines(commands.instance_create(spec, "/tmp/ud"))
    )


def test_instance_create_container_declaration():
    spec = fixed_spec(method="container-declaration")
    argv = commands.instance_create(spec, "/tmp/ud")
    assert argv[:4] == ["gcloud", "compute", "instances", "create-with-container"]
    assert_golden("instances-create-container-declaration.txt", _lines(argv))


def test_firewall_create_targets_the_tag_from_the_callers_range_only():
    argv = commands.firewall_create(fixed_spec())
    assert_golden("firewall-create.txt", _lines(argv))
    assert argv[argv.index("--source-ranges") + 1] == "203.0.113.7/32"
    assert argv[argv.index("--rules") + 1] == "tcp:8786-8787"


def test_non_adjacent_ports_become_two_rules():
    spec = fixed_spec(scheduler_port=9000, dashboard_port=8000)
    assert spec.firewall_allow == "tcp:8000,tcp:9000"


@pytest.mark.parametrize(
    ("overrides", "expected", "absent"),
    [
        ({}, ["--max-run-duration", "8h", "--instance-termination-action", "DELETE"], ["SPOT"]),
        ({"max_run_duration": "0"}, [], ["--max-run-duration", "--instance-termination-action"]),
        (
            {"spot": True, "max_run_duration": ""},
            ["--provisioning-model", "SPOT", "--instance-termination-action", "DELETE"],
            ["--max-run-duration"],
        ),
        ({"service_account": "sa@acme.iam.gserviceaccount.com"}, ["--service-account"], []),
    ],
)
def test_scheduling_flags(overrides, expected, absent):
    argv = commands.instance_create(fixed_spec(**overrides))
    joined = " ".join(argv)
    assert " ".join(expected) in joined
    for flag in absent:
        assert flag not in argv


def test_every_command_names_project_explicitly():
    spec = fixed_spec()
    for argv in (
        commands.instance_create(spec),
        commands.firewall_create(spec),
        commands.instance_delete("acme", "us-central1-a", "x"),
        commands.instance_list("acme"),
        commands.firewall_delete("acme", "rule"),
    ):
        assert argv[argv.index("--project") + 1] == "acme"
