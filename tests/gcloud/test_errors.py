"""Every launch/teardown error: one line on stderr, exit 1, nothing half-made left behind."""

from __future__ import annotations

import pytest

from conftest import daskbox
from daskbox.client.connection import connection_dir

pytestmark = [pytest.mark.docker]

CALLER = "203.0.113.7/32"


def _fails(project, env, *args: str) -> str:
    result = daskbox(project, env, *args, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
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


def test_gcloud_not_installed(project, gcloud_env, tmp_path):
    env = {**gcloud_env, "PATH": str(tmp_path)}  # a PATH without gcloud
    message = _fails(project, env, "launch", "--image", "x:y", "--source-range", CALLER)
    assert "gcloud is not installed" in message


def test_not_authenticated(project, gcloud_env, cluster_image, emulator):
    env = {k: v for k, v in gcloud_env.items() if k != "CLOUDSDK_AUTH_DISABLE_CREDENTIALS"}
    message = _launch(project, env, cluster_image.reference)
    assert "not authenticated" in message and "gcloud auth login" in message
    _nothing_left(project, emulator)


def test_no_project(project, gcloud_env, cluster_image, emulator):
    env = {k: v for k, v in gcloud_env.items() if k != "CLOUDSDK_CORE_PROJECT"}
    message = _launch(project, env, cluster_image.reference)
    assert "no Google Cloud project set" in message and "--project" in message
    _nothing_left(project, emulator)


def test_unknown_zone_rolls_back_the_firewall_rule(project, gcloud_env, cluster_image, emulator):
    message = _launch(project, gcloud_env, cluster_image.reference, "--zone", "xx-bogus9-z")
    assert "zone xx-bogus9-z does not exist" in message
    assert emulator.bodies("POST", r"global/firewalls$")  # it was created, then deleted
    _nothing_left(project, emulator)


def test_malformed_zone_is_refused_before_gcloud(project, gcloud_env, emulator):
    message = _fails(project, gcloud_env, "launch", "--image", "x:y", "--zone", "central")
    assert "zone 'central' is not a zone name" in message
    assert emulator.requests == []


def test_invalid_machine_type(project, gcloud_env, cluster_image, emulator):
    message = _launch(project, gcloud_env, cluster_image.reference, "--machine-type", "e2-huge-7")
    assert "machine type e2-huge-7 is not available in us-central1-a" in message
    _nothing_left(project, emulator)


def test_instance_already_exists(project, gcloud_env, cluster_image, emulator):
    emulator.boot = False
    instance = project.joinpath("pyproject.toml").read_text().split('instance = "')[1].split('"')[0]
    emulator.insert_instance(
        "test-project",
        "us-central1-a",
        {"name": instance, "machineType": "zones/x/machineTypes/e2-micro"},
    )
    message = _launch(project, gcloud_env, cluster_image.reference)
    assert f"instance {instance} already exists" in message and "invoke teardown" in message
    assert list(emulator.instances) == [("test-project", "us-central1-a", instance)]
    assert emulator.firewalls == {}  # this launch's rule was rolled back


def test_image_not_pushed(project, gcloud_env, cluster_image, emulator):
    missing = cluster_image.reference.rsplit(":", 1)[0] + ":not-pushed"
    message = _launch(project, gcloud_env, missing)
    assert f"image {missing} is not in the registry" in message
    assert "invoke build push" in message
    _nothing_left(project, emulator)


def test_firewall_creation_refused(project, gcloud_env, cluster_image, emulator):
    emulator.fail("firewalls.insert", 403, "Required 'compute.firewalls.create' permission")
    message = _launch(project, gcloud_env, cluster_image.reference)
    assert "firewall rule daskbox-allow-tcp-" in message
    assert "compute.firewalls.create" in message
    assert emulator.bodies("POST", r"/instances$") == []
    _nothing_left(project, emulator)


def test_public_ip_not_detected(project, gcloud_env, cluster_image, emulator):
    message = _fails(project, gcloud_env, "launch", "--image", cluster_image.reference)
    assert message.endswith(
        "could not detect your public IP address: pass --source-range YOUR.IP/32"
    )
    _nothing_left(project, emulator)


def test_open_source_range_needs_explicit_flag(project, gcloud_env, cluster_image, emulator):
    message = _fails(
        project, gcloud_env, "launch", "--image", cluster_image.reference,
        "--source-range", "0.0.0.0/0",
    )  # fmt: skip
    assert "opens the cluster to everyone" in message and "--allow-any-source" in message
    _nothing_left(project, emulator)


def test_teardown_of_unknown_instance(project, gcloud_env, emulator):
    message = _fails(project, gcloud_env, "teardown", "--instance", "daskbox-nope")
    assert "instance daskbox-nope not found in us-central1-a of test-project" in message


def test_teardown_of_unknown_local_instance(project):
    message = _fails(project, None, "teardown", "--local", "--instance", "daskbox-nope-local")
    assert "no local cluster named daskbox-nope-local" in message


def test_dry_run_prints_commands_and_calls_no_api(project, gcloud_env, cluster_image, emulator):
    result = daskbox(
        project, gcloud_env, "launch", "--dry-run", "--image", cluster_image.reference,
        "--source-range", CALLER,
    )  # fmt: skip
    assert "$ gcloud compute firewall-rules create" in result.stdout
    assert "$ gcloud compute instances create" in result.stdout
    assert "#cloud-config" in result.stdout and "<this launch's server key>" in result.stdout
    assert "PRIVATE KEY" not in result.stdout
    assert emulator.requests == []
    _nothing_left(project, emulator)


def test_quota_error_is_passed_on_in_one_line(project, gcloud_env, cluster_image, emulator):
    emulator.fail(
        "instances.insert", 403, "Quota 'CPUS' exceeded.  Limit: 8.0 in region us-central1."
    )
    message = _launch(project, gcloud_env, cluster_image.reference)
    assert "creating instance" in message and "Quota 'CPUS' exceeded" in message
    _nothing_left(project, emulator)


def _gce_connection_file(project, instance: str, rule: str, zone: str = "us-central1-a") -> None:
    from daskbox.client.connection import ConnectionFile, connection_path, write_connection_file

    write_connection_file(
        connection_path(project, instance),
        ConnectionFile(
            instance=instance,
            target="gce",
            scheduler_address="tls://127.0.0.1:1",
            dashboard_url="http://127.0.0.1:2/status",
            image="registry.example/x@sha256:" + "0" * 64,
            lock_hash="",
            groups=("main",),
            tls=None,
            project="test-project",
            zone=zone,
            firewall_rule=rule,
            extra={"network_tag": "daskbox"},
        ),
    )


def test_teardown_after_the_vm_deleted_itself(project, gcloud_env, emulator):
    """Max run duration already deleted the VM: teardown still removes rule and file."""
    emulator.insert_firewall("test-project", {"name": "daskbox-allow-tcp-1-2"})
    _gce_connection_file(project, "daskbox-gone", "daskbox-allow-tcp-1-2")
    result = daskbox(project, gcloud_env, "teardown")
    assert "instance daskbox-gone was already deleted" in result.stdout
    _nothing_left(project, emulator)


def test_teardown_of_a_named_instance_reads_its_connection_file_not_gcloud_config(
    project, gcloud_env, emulator
):
    """The file names the project: no configured gcloud project is needed (nor asked for)."""
    emulator.insert_firewall("test-project", {"name": "daskbox-allow-tcp-1-2"})
    _gce_connection_file(project, "daskbox-named", "daskbox-allow-tcp-1-2")
    env = {key: value for key, value in gcloud_env.items() if key != "CLOUDSDK_CORE_PROJECT"}
    result = daskbox(project, env, "teardown", "--instance", "daskbox-named")
    assert "instance daskbox-named was already deleted" in result.stdout
    _nothing_left(project, emulator)


def test_vm_without_external_ip_can_still_be_torn_down(
    project, gcloud_env, cluster_image, emulator
):
    """The connection file is written as soon as the VM exists, so teardown finds it."""
    emulator.external_ip = False
    result = daskbox(
        project, gcloud_env, "launch", "--image", cluster_image.reference,
        "--source-range", CALLER, "--timeout", "4", check=False,
    )  # fmt: skip
    assert result.returncode == 1
    [message] = result.stderr.strip().splitlines()
    assert "got no external IP within 4 s" in message and "invoke teardown" in message
    # The poll's command is printed once, then only progress lines.
    assert result.stdout.count("$ gcloud compute instances describe") == 1
    assert len(emulator.instances) == 1 and len(emulator.firewalls) == 1
    down = daskbox(project, gcloud_env, "teardown")
    assert "nothing to delete" not in down.stdout
    _nothing_left(project, emulator)


def test_teardown_in_a_missing_zone_is_an_error_not_already_deleted(project, gcloud_env, emulator):
    """A zone (or project) that does not exist must not look like a VM that is gone:
    the connection file stays so the real VM is not forgotten."""
    emulator.insert_firewall("test-project", {"name": "daskbox-allow-tcp-1-2"})
    _gce_connection_file(project, "daskbox-elsewhere", "daskbox-allow-tcp-1-2", "xx-bogus9-z")
    message = _fails(project, gcloud_env, "teardown")
    assert "already deleted" not in message
    assert "projects/test-project/zones/xx-bogus9-z" in message
    assert list(connection_dir(project).glob("*.json"))
    assert emulator.firewalls


def test_no_spot_overrides_spot_in_the_config(project, gcloud_env, cluster_image, emulator):
    with (project / "pyproject.toml").open("a") as stream:
        stream.write("spot = true\n")
    common = ("launch", "--dry-run", "--image", cluster_image.reference, "--source-range", CALLER)
    assert "--provisioning-model SPOT" in daskbox(project, gcloud_env, *common).stdout
    assert "SPOT" not in daskbox(project, gcloud_env, *common, "--no-spot").stdout
    message = _fails(project, gcloud_env, *common, "--spot", "--no-spot")
    assert "--spot and --no-spot contradict each other" in message


def test_wide_source_range_is_warned_about(project, gcloud_env, cluster_image, emulator):
    result = daskbox(
        project, gcloud_env, "launch", "--dry-run", "--image", cluster_image.reference,
        "--source-range", "10.0.0.0/8",
    )  # fmt: skip
    assert "warning: source range 10.0.0.0/8 admits 16777216 addresses" in result.stdout


def test_teardown_dry_run_deletes_nothing(project, gcloud_env, emulator):
    emulator.insert_firewall("test-project", {"name": "daskbox-allow-tcp-1-2"})
    _gce_connection_file(project, "daskbox-kept", "daskbox-allow-tcp-1-2")
    result = daskbox(project, gcloud_env, "teardown", "--dry-run")
    assert "$ gcloud compute instances delete daskbox-kept" in result.stdout
    assert emulator.requests == [] and emulator.firewalls
    assert list(connection_dir(project).glob("*.json"))
