"""Every launch/teardown error: one line on stderr, a non-zero exit, and nothing half-made
left behind (or, once the VM exists, something `invoke teardown` finds and deletes)."""

from __future__ import annotations

import subprocess

import pytest

from conftest import daskbox
from daskbox.client.connection import connection_dir, connection_path

pytestmark = [pytest.mark.docker]

CALLER = "203.0.113.7/32"
ZONE = "us-central1-a"


def _fails(project, env, *args: str, code: int = 1) -> str:
    result = daskbox(project, env, *args, check=False)
    assert result.returncode == code, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def _nothing_left(project, emulator) -> None:
    assert emulator.instances == {}
    assert emulator.firewalls == {}
    assert emulator.containers() == []
    assert not list(connection_dir(project).glob("*.json"))


def _launch(project, env, image, *extra: str) -> str:
    return _fails(project, env, "launch", "--image", image, "--source-range", CALLER, *extra)


def _instance(project) -> str:
    text = (project / "pyproject.toml").read_text()
    return text.split('instance = "')[1].split('"')[0]


def _gcloud(env, *args: str) -> None:
    subprocess.run(["gcloud", *args], env=env, check=True, capture_output=True, text=True)


def test_gcloud_not_installed(project, gcloud_env, vm_image, tmp_path):
    env = {**gcloud_env, "PATH": str(tmp_path)}  # a PATH without gcloud
    message = _fails(project, env, "launch", "--image", vm_image.pinned, "--source-range", CALLER)
    assert "gcloud is not installed" in message


def test_not_authenticated(project, gcloud_env, vm_image, emulator):
    env = {k: v for k, v in gcloud_env.items() if k != "CLOUDSDK_AUTH_DISABLE_CREDENTIALS"}
    message = _launch(project, env, vm_image.pinned)
    assert message == "error: gcloud is not authenticated: run `gcloud auth login`"
    _nothing_left(project, emulator)


def test_no_project(project, gcloud_env, vm_image, emulator):
    env = {k: v for k, v in gcloud_env.items() if k != "CLOUDSDK_CORE_PROJECT"}
    message = _launch(project, env, vm_image.pinned)
    assert "no Google Cloud project set" in message and "--project" in message
    _nothing_left(project, emulator)


def test_launch_flags_are_checked_before_anything(project, gcloud_env, vm_image, emulator):
    """The issue's example: nothing is planned with a bad value, on either target."""
    bad = ("--workers", "abc", "--scheduler-port", "70000", "--memory-per-worker", "5XB")
    for target in ((), ("--local",)):
        message = _launch(project, gcloud_env, vm_image.pinned, *bad, "--dry-run", *target)
        assert message.startswith("error: --workers='abc' is invalid: expected a whole number")
    message = _launch(project, gcloud_env, vm_image.pinned, "--memory-per-worker", "5XB")
    assert "--memory-per-worker='5XB' is invalid" in message
    message = _launch(project, gcloud_env, vm_image.pinned, "--max-run-duration", "10s")
    assert "max-run-duration '10s' is out of range" in message
    assert emulator.requests == []
    _nothing_left(project, emulator)


def test_arm64_machine_needs_an_arm64_image(project, gcloud_env, vm_image, emulator):
    message = _launch(project, gcloud_env, vm_image.pinned, "--machine-type", "t2a-standard-4")
    assert "built for linux/amd64 but t2a-standard-4 is a linux/arm64 machine" in message
    assert emulator.requests == []


def test_private_registry_needs_the_explicit_opt_in(project, gcloud_env, vm_image, emulator):
    message = _launch(project, gcloud_env, vm_image.pinned, "--no-allow-private-registry")
    assert "is a loopback address, out of the VM's reach" in message
    assert "push the image to Artifact Registry" in message
    assert emulator.requests == []


def test_registry_wanting_credentials_is_refused(project, gcloud_env, cluster_image, emulator):
    """The VM has no credentials for a registry other than Google's, and the host's login
    does not travel to it."""
    message = _launch(project, gcloud_env, cluster_image.pinned)
    assert "does not serve it without credentials" in message
    assert "push the image to Artifact Registry" in message
    assert emulator.requests == []


def test_unknown_zone_is_refused_before_anything_is_created(
    project, gcloud_env, vm_image, emulator
):
    """Reading the machine type's catalogue entry finds the zone missing first."""
    message = _launch(project, gcloud_env, vm_image.pinned, "--zone", "xx-bogus9-z")
    assert "zone xx-bogus9-z does not exist" in message
    assert not emulator.bodies("POST", r"global/firewalls$")
    _nothing_left(project, emulator)


def test_workers_the_machine_cannot_hold_are_refused_before_anything(
    project, gcloud_env, vm_image, emulator
):
    """The issue's case: --workers 1000000000 on e2-highcpu-16 created the rule and the VM,
    whose entrypoint refused the settings at boot while launch waited for the timeout."""
    message = _launch(
        project, gcloud_env, vm_image.pinned, "--workers", "1000000000", "--timeout", "15"
    )
    assert message.startswith(
        "error: e2-highcpu-16 cannot hold these settings: --workers=1000000000: "
    )
    assert message.endswith("expected at most 57 workers (256.00 MiB each)")
    assert not emulator.bodies("POST", r"(firewalls|instances)$")
    _nothing_left(project, emulator)


def test_malformed_zone_is_refused_before_gcloud(project, gcloud_env, emulator):
    message = _fails(project, gcloud_env, "launch", "--image", "x:y", "--zone", "central")
    assert "zone 'central' is not a zone name" in message
    assert emulator.requests == []


def test_machine_type_not_offered_in_the_zone(project, gcloud_env, vm_image, emulator):
    message = _launch(
        project,
        gcloud_env,
        vm_image.pinned,
        "--zone",
        "us-west1-a",
        "--machine-type",
        "c3-standard-176",
    )
    assert "machine type c3-standard-176 is not available in us-west1-a" in message
    _nothing_left(project, emulator)


def test_instance_already_exists(project, gcloud_env, vm_image, emulator):
    """Another launch (here plain gcloud) holds the name: its VM is left alone."""
    emulator.boot = False
    instance = _instance(project)
    _gcloud(
        gcloud_env,
        "compute",
        "instances",
        "create",
        instance,
        "--zone",
        ZONE,
        "--machine-type",
        "e2-small",
        "--image-project",
        "cos-cloud",
        "--image-family",
        "cos-stable",
    )
    message = _launch(project, gcloud_env, vm_image.pinned)
    assert f"instance {instance} already exists" in message and "invoke teardown" in message
    assert list(emulator.instances) == [("test-project", ZONE, instance)]
    assert emulator.firewalls == {}  # this launch's rule was rolled back
    assert not connection_path(project, instance).exists()


def test_a_concurrent_launch_is_reported_as_a_race(project, gcloud_env, vm_image, emulator):
    """Two launches of one instance: the second finds the first's rule and says so (not
    "permission denied"), and undoes only what it made itself."""
    emulator.boot = False
    instance = _instance(project)
    _gcloud(
        gcloud_env,
        "compute",
        "firewall-rules",
        "create",
        f"{instance}-ipv4",
        "--allow",
        "tcp:1",
        "--source-ranges",
        CALLER,
    )
    message = _launch(project, gcloud_env, vm_image.pinned)
    assert f"firewall rule {instance}-ipv4 already exists" in message
    assert "a race between two launches, not a missing permission" in message
    assert emulator.instances == {}  # its own instance was deleted again
    assert list(emulator.firewalls) == [("test-project", f"{instance}-ipv4")]


def test_firewall_creation_refused(project, gcloud_env, vm_image, emulator):
    emulator.fail("firewalls.insert", 403, "Required 'compute.firewalls.create' permission")
    message = _launch(project, gcloud_env, vm_image.pinned)
    assert "firewall rule could not be created" in message
    assert "compute.firewalls.create" in message
    _nothing_left(project, emulator)  # the instance made alongside was deleted


def test_an_operation_failing_inside_rolls_back(project, gcloud_env, vm_image, emulator):
    """Stock-outs and quotas arrive as errors inside the asynchronous operation."""
    emulator.fail_operation(
        "instances.insert",
        "ZONE_RESOURCE_POOL_EXHAUSTED",
        "The zone 'projects/test-project/zones/us-central1-a' does not have enough "
        "resources available to fulfill the request.",
    )
    message = _launch(project, gcloud_env, vm_image.pinned)
    assert "creating instance" in message and "does not have enough resources" in message
    _nothing_left(project, emulator)


def test_quota_error_is_passed_on_in_one_line(project, gcloud_env, vm_image, emulator):
    emulator.fail(
        "instances.insert", 403, "Quota 'CPUS' exceeded.  Limit: 8.0 in region us-central1."
    )
    message = _launch(project, gcloud_env, vm_image.pinned)
    assert "creating instance" in message and "Quota 'CPUS' exceeded" in message
    _nothing_left(project, emulator)


def test_public_ip_not_detected(project, gcloud_env, vm_image, emulator):
    message = _fails(project, gcloud_env, "launch", "--image", vm_image.pinned)
    assert message.endswith(
        "could not detect your public IP address: pass --source-range YOUR.IP/32"
    )
    _nothing_left(project, emulator)


@pytest.mark.parametrize("ranges", ["0.0.0.0/0", "0.0.0.0/1,128.0.0.0/1", "10.0.0.0/23"])
def test_wide_source_ranges_need_explicit_flag(project, gcloud_env, vm_image, emulator, ranges):
    message = _fails(
        project, gcloud_env, "launch", "--image", vm_image.pinned, "--source-range", ranges
    )
    assert "more than one owner's 256" in message and "--allow-any-source" in message
    _nothing_left(project, emulator)
    allowed = daskbox(
        project,
        gcloud_env,
        "launch",
        "--image",
        vm_image.pinned,
        "--dry-run",
        "--source-range",
        ranges,
        "--allow-any-source",
    )
    assert "warning: the firewall admits" in allowed.stdout


def test_ipv4_and_ipv6_get_a_rule_each_and_teardown_deletes_both(
    project, gcloud_env, vm_image, emulator
):
    emulator.boot = False  # the VM never publishes its CA: launch stops, teardown cleans up
    instance = _instance(project)
    message = _fails(
        project,
        gcloud_env,
        "launch",
        "--image",
        vm_image.pinned,
        "--source-range",
        f"{CALLER},2001:db8::7/128",
        "--timeout",
        "3",
    )
    assert "did not publish its cluster CA within 3 s" in message
    assert f"invoke teardown --instance {instance}" in message
    rules = {name: rule["sourceRanges"] for (_, name), rule in emulator.firewalls.items()}
    assert rules == {f"{instance}-ipv4": [CALLER], f"{instance}-ipv6": ["2001:db8::7/128"]}
    daskbox(project, gcloud_env, "teardown")
    _nothing_left(project, emulator)


def test_teardown_of_unknown_instance(project, gcloud_env, emulator):
    message = _fails(project, gcloud_env, "teardown", "--instance", "daskbox-nope")
    assert message == (
        "error: no instance or firewall rule named daskbox-nope in us-central1-a of "
        "test-project: `invoke status` lists daskbox clusters"
    )


def test_teardown_of_unknown_local_instance(project):
    message = _fails(project, None, "teardown", "--local", "--instance", "daskbox-nope-local")
    assert "no local cluster named daskbox-nope-local" in message


def test_dry_run_prints_commands_and_calls_no_api(project, gcloud_env, vm_image, emulator):
    result = daskbox(
        project,
        gcloud_env,
        "launch",
        "--dry-run",
        "--image",
        vm_image.pinned,
        "--source-range",
        CALLER,
    )
    assert "$ gcloud compute firewall-rules create" in result.stdout
    assert "$ gcloud compute instances create" in result.stdout
    assert "#cloud-config" in result.stdout and "[Service]" in result.stdout
    assert "PRIVATE KEY" not in result.stdout
    assert emulator.requests == []
    _nothing_left(project, emulator)


def _record_and_rule(project, gcloud_env, vm_image, emulator, *extra: str) -> str:
    """A launch that stopped after creating its rule and its VM (the VM never boots)."""
    emulator.boot = False
    _launch(project, gcloud_env, vm_image.pinned, "--timeout", "2", *extra)
    instance = _instance(project)
    assert len(emulator.instances) == 1 and len(emulator.firewalls) == 1
    return instance


def test_teardown_after_the_vm_deleted_itself(project, gcloud_env, vm_image, emulator):
    """Max run duration already deleted the VM: teardown still removes rule and file."""
    instance = _record_and_rule(project, gcloud_env, vm_image, emulator)
    _gcloud(gcloud_env, "compute", "instances", "delete", instance, "--zone", ZONE, "--quiet")
    result = daskbox(project, gcloud_env, "teardown")
    assert f"instance {instance} was already gone" in result.stdout
    _nothing_left(project, emulator)


def test_teardown_of_a_named_instance_reads_its_connection_file_not_gcloud_config(
    project, gcloud_env, vm_image, emulator
):
    """The file names the project: no configured gcloud project is needed (nor asked for)."""
    instance = _record_and_rule(project, gcloud_env, vm_image, emulator)
    env = {key: value for key, value in gcloud_env.items() if key != "CLOUDSDK_CORE_PROJECT"}
    emulator.requests.clear()
    daskbox(project, env, "teardown", "--instance", instance)
    _nothing_left(project, emulator)
    assert not [r for r in emulator.requests if r.method == "GET" and "aggregated" in r.path]


def test_a_corrupt_connection_file_is_set_aside_and_teardown_finds_by_label(
    project, gcloud_env, vm_image, emulator
):
    instance = _record_and_rule(project, gcloud_env, vm_image, emulator)
    path = connection_path(project, instance)
    path.write_text('{"version": 2, "instance": "trunc')
    result = daskbox(project, gcloud_env, "teardown")
    assert f"set aside {instance}.json, which is not a readable connection file" in result.stdout
    assert f"deleted {instance}" in result.stdout
    _nothing_left(project, emulator)
    assert [p.name.split(".corrupt-")[0] for p in connection_dir(project).iterdir()] == [
        f"{instance}.json"
    ]


def test_a_deleted_connection_file_is_no_dead_end(project, gcloud_env, vm_image, emulator):
    """The labels and the rule's description name the project: teardown finds both."""
    instance = _record_and_rule(project, gcloud_env, vm_image, emulator)
    connection_path(project, instance).unlink()
    result = daskbox(project, gcloud_env, "teardown")
    assert "$ gcloud compute instances list" in result.stdout
    assert f"deleted {instance}" in result.stdout
    _nothing_left(project, emulator)


def test_a_second_launch_over_a_record_is_refused(project, gcloud_env, vm_image, emulator):
    instance = _record_and_rule(project, gcloud_env, vm_image, emulator)
    message = _launch(project, gcloud_env, vm_image.pinned)
    assert f"{instance} is already launched, or was half-launched" in message
    assert f"invoke teardown --instance {instance}" in message
    daskbox(project, gcloud_env, "teardown")
    _nothing_left(project, emulator)


def test_vm_without_external_ip_can_still_be_torn_down(project, gcloud_env, vm_image, emulator):
    emulator.external_ip = False
    message = _launch(project, gcloud_env, vm_image.pinned, "--timeout", "40")
    assert "got no external IP within 40 s" in message and "invoke teardown" in message
    assert len(emulator.instances) == 1 and len(emulator.firewalls) == 1
    down = daskbox(project, gcloud_env, "teardown")
    assert "nothing to delete" not in down.stdout
    _nothing_left(project, emulator)


def test_teardown_in_a_missing_zone_is_an_error_not_already_deleted(
    project, gcloud_env, vm_image, emulator
):
    """A zone (or project) that does not exist must not look like a VM that is gone:
    the connection file stays so the real VM is not forgotten."""
    instance = _record_and_rule(project, gcloud_env, vm_image, emulator)
    path = connection_path(project, instance)
    path.write_text(path.read_text().replace(f'"{ZONE}"', '"xx-bogus9-z"'))
    message = _fails(project, gcloud_env, "teardown")
    assert "already" not in message
    assert "projects/test-project/zones/xx-bogus9-z" in message
    assert path.exists()


def test_no_spot_overrides_spot_in_the_config(project, gcloud_env, vm_image, emulator):
    with (project / "pyproject.toml").open("a") as stream:
        stream.write("spot = true\n")
    common = ("launch", "--dry-run", "--image", vm_image.pinned, "--source-range", CALLER)
    assert "--provisioning-model SPOT" in daskbox(project, gcloud_env, *common).stdout
    assert "SPOT" not in daskbox(project, gcloud_env, *common, "--no-spot").stdout
    message = _fails(project, gcloud_env, *common, "--spot", "--no-spot")
    assert "--spot and --no-spot contradict each other" in message


def test_teardown_dry_run_deletes_nothing(project, gcloud_env, vm_image, emulator):
    instance = _record_and_rule(project, gcloud_env, vm_image, emulator)
    emulator.requests.clear()
    result = daskbox(project, gcloud_env, "teardown", "--dry-run")
    assert f"$ gcloud compute instances delete {instance}" in result.stdout
    assert f"$ gcloud compute firewall-rules delete {instance}-ipv4" in result.stdout
    assert emulator.requests == [] and emulator.firewalls
    assert connection_path(project, instance).exists()
