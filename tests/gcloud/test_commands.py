"""gcloud argv lists, pinned by golden files; they are lists, never shell strings."""

from __future__ import annotations

import shlex

import pytest
from golden_files import assert_golden
from specs import IMAGE, fixed_spec

from daskbox.gcloud import commands
from daskbox.gcloud.spec import LaunchImage


def _lines(argv: list[str]) -> str:
    return shlex.join(argv) + "\n"


def test_instance_create_spot():
    spec = fixed_spec(spot=True)
    assert_golden("instances-create.txt", _lines(commands.instance_create(spec, "/tmp/ud")))


def test_instance_create_metadata_is_the_user_data_and_guest_attributes_only():
    argv = commands.instance_create(fixed_spec(), "/tmp/ud")
    assert argv[argv.index("--metadata") + 1] == "enable-guest-attributes=TRUE"
    assert argv[argv.index("--metadata-from-file") + 1] == "user-data=/tmp/ud"
    assert argv.count("--metadata") == 1 and argv.count("--metadata-from-file") == 1


@pytest.mark.parametrize(
    ("machine_type", "family"),
    [
        ("e2-highcpu-16", "cos-stable"),
        ("t2a-standard-8", "cos-arm64-stable"),
        ("c4a-highcpu-72", "cos-arm64-stable"),
        ("n2d-standard-224", "cos-stable"),
    ],
)
def test_arm64_machines_boot_the_arm64_cos_family(machine_type, family):
    image = LaunchImage(IMAGE.reference, IMAGE.lock_hash, IMAGE.groups, platform="linux/arm64")
    argv = commands.instance_create(fixed_spec(machine_type=machine_type, image=image))
    assert argv[argv.index("--image-family") + 1] == family
    assert argv[argv.index("--image-project") + 1] == "cos-cloud"


def test_firewall_rule_targets_this_instance_only_from_the_callers_range():
    spec = fixed_spec()
    [rule] = spec.firewall_rules
    argv = commands.firewall_create(spec, rule)
    assert_golden("firewall-create.txt", _lines(argv))
    assert argv[argv.index("--source-ranges") + 1] == "203.0.113.7/32"
    assert argv[argv.index("--rules") + 1] == "tcp:8786-8787"
    # The tag is the instance's own, not the shared network tag other launches carry too.
    assert argv[argv.index("--target-tags") + 1] == "daskbox-demo"
    create = commands.instance_create(spec)
    assert create[create.index("--tags") + 1] == "daskbox,daskbox-demo"


def test_ipv4_and_ipv6_ranges_get_separate_rules():
    spec = fixed_spec(ranges=("203.0.113.7/32", "2001:db8::7/128"))
    assert [(rule.name, rule.source_ranges) for rule in spec.firewall_rules] == [
        ("daskbox-demo-ipv4", ("203.0.113.7/32",)),
        ("daskbox-demo-ipv6", ("2001:db8::7/128",)),
    ]


def test_non_adjacent_ports_become_two_port_entries():
    spec = fixed_spec(scheduler_port=9000, dashboard_port=8000)
    assert spec.firewall_allow == "tcp:8000,tcp:9000"


@pytest.mark.parametrize(
    ("overrides", "expected", "absent"),
    [
        ({}, ["--max-run-duration", "28800s", "--instance-termination-action", "DELETE"], ["SPOT"]),
        ({"max_run_duration": "0"}, [], ["--max-run-duration", "--instance-termination-action"]),
        ({"max_run_duration": "90m"}, ["--max-run-duration", "5400s"], []),
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


def test_labels_name_the_project_so_teardown_finds_the_instance_without_a_file():
    argv = commands.instance_create(fixed_spec())
    labels = dict(item.split("=") for item in argv[argv.index("--labels") + 1].split(","))
    assert labels == {
        "daskbox": "managed",
        "daskbox-lock": "0123456789abcdef",
        "daskbox-project": "demo",
    }
    listing = commands.instance_list("acme", "demo")
    assert listing[listing.index("--filter") + 1] == (
        "labels.daskbox=managed AND labels.daskbox-project=demo"
    )


def test_every_command_names_project_explicitly():
    spec = fixed_spec()
    for argv in (
        commands.instance_create(spec),
        commands.firewall_create(spec, spec.firewall_rules[0]),
        commands.instance_delete("acme", "us-central1-a", "x"),
        commands.instance_list("acme"),
        commands.firewall_delete("acme", ("rule",)),
        commands.firewall_list("acme", "demo"),
        commands.cluster_ca("acme", "us-central1-a", "x"),
    ):
        assert argv[argv.index("--project") + 1] == "acme"
