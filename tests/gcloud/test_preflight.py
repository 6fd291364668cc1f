"""Everything checked before anything is created: the entrypoint's own validation of the
launch flags, durations, labels, the image's architecture against the machine type, and
whether the VM can reach and pull from the image's registry."""

from __future__ import annotations

import hashlib
import json
import urllib.parse
import urllib.request

import pytest
from specs import IMAGE

from daskbox.entrypoint.settings import SettingsError, read_settings
from daskbox.errors import LaunchSpecError
from daskbox.gcloud.checks import (
    check_entrypoint_settings,
    check_launch,
    check_machine_fits,
    check_registry_serves_vm,
)
from daskbox.gcloud.machines import check_architecture, cos_image_family, machine_platform
from daskbox.gcloud.registry import (
    anonymous_pull,
    check_vm_can_pull,
    is_google_registry,
    private_reason,
)
from daskbox.gcloud.settings import LaunchSettings, parse_duration, validate_settings
from daskbox.gcloud.spec import LaunchImage, entrypoint_env, source_ranges
from daskbox_services import Registry


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"workers": "abc"}, "--workers='abc' is invalid: expected a whole number"),
        ({"memory_per_worker": "5XB"}, "--memory-per-worker='5XB' is invalid"),
        ({"threads_per_worker": "0"}, "--threads-per-worker='0' is invalid"),
        ({"idle_timeout": "10 fortnights"}, "--idle-timeout='10 fortnights' is invalid"),
        ({"orphan_timeout": "soon"}, "orphan-timeout='soon' is invalid"),
        ({"scheduler_port": 70000}, "--scheduler-port='70000' is invalid: expected a port"),
        ({"scheduler_port": 9000, "dashboard_port": 9000}, "are both 9000"),
    ],
)
def test_launch_flags_go_through_the_entrypoints_own_validation(flags, message):
    settings = LaunchSettings(instance="x", **flags)
    env = dict(entrypoint_env(settings))
    with pytest.raises(SettingsError):  # the very function the container runs
        read_settings(env)
    with pytest.raises(LaunchSpecError, match=message):
        check_entrypoint_settings(env)


def test_the_orphan_timeout_reaches_the_containers_only_when_set():
    assert "DASKBOX_ORPHAN_TIMEOUT" not in dict(entrypoint_env(LaunchSettings(instance="x")))
    chosen = dict(entrypoint_env(LaunchSettings(instance="x", orphan_timeout="30s")))
    assert chosen["DASKBOX_ORPHAN_TIMEOUT"] == "30s"


def test_valid_flags_pass():
    settings = LaunchSettings(instance="x", workers="4", memory_per_worker="3GiB")
    check_entrypoint_settings(dict(entrypoint_env(settings)))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("8h", 28800),
        ("90m", 5400),
        ("30s", 30),
        ("2d", 172800),
        ("120d", 10368000),
        ("3600", 3600),
        ("2 days", 172800),
        ("0", None),
        ("", None),
    ],
)
def test_durations_use_dasks_parser(text, seconds):
    assert parse_duration(text, "max-run-duration") == seconds


@pytest.mark.parametrize("text", ["29s", "121d", "eight hours", "1d12h", "-5m"])
def test_durations_outside_30s_to_120_days_are_refused(text):
    with pytest.raises(LaunchSpecError, match="max-run-duration"):
        parse_duration(text, "max-run-duration")


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ((("Team", "data"),), "label Team='data' is invalid"),
        ((("team", "Data"),), "label team='Data' is invalid"),
        ((("1team", "x"),), "is invalid"),
        ((("team", "x" * 64),), "is invalid"),
        ((("daskbox", "mine"),), "daskbox's own"),
        ((("daskbox-project", "other"),), "daskbox's own"),
        (tuple((f"k{i}", "v") for i in range(62)), "too many"),
    ],
)
def test_labels_follow_compute_engines_rules(labels, message):
    with pytest.raises(LaunchSpecError, match=message):
        validate_settings(LaunchSettings(instance="x", labels=labels))


@pytest.mark.parametrize(
    ("machine", "platform", "family"),
    [
        ("e2-highcpu-16", "linux/amd64", "cos-stable"),
        ("t2a-standard-8", "linux/arm64", "cos-arm64-stable"),
        ("c4a-highmem-72", "linux/arm64", "cos-arm64-stable"),
        ("custom-4-8192", "linux/amd64", "cos-stable"),
        ("n2d-custom-8-16384", "linux/amd64", "cos-stable"),
    ],
)
def test_machine_types_map_to_their_architecture(machine, platform, family):
    assert machine_platform(machine) == platform
    assert cos_image_family(machine) == family


def test_an_image_for_the_wrong_architecture_is_refused():
    check_architecture("t2a-standard-8", "linux/arm64")
    with pytest.raises(
        LaunchSpecError, match="built for linux/amd64 but t2a-standard-8 is a linux/arm64 machine"
    ):
        check_architecture("t2a-standard-8", "linux/amd64")
    with pytest.raises(LaunchSpecError, match="launch on an Arm machine type"):
        check_architecture("e2-highcpu-16", "linux/arm64")


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("localhost:5000", "loopback"),
        ("127.0.0.1:5000", "loopback"),
        ("[::1]:5000", "loopback"),
        ("169.254.169.254", "link-local"),
        ("[fe80::1]:5000", "link-local"),
        ("10.0.0.5:5000", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.10:5000", "private"),
        ("[fd00::5]:5000", "private"),
        ("registry:5000", "without a domain"),
        ("registry.local", "local-network"),
        ("registry.corp.internal:443", "local-network"),
        ("ghcr.io", None),
        ("europe-docker.pkg.dev", None),
        ("34.102.136.180:5000", None),
    ],
)
def test_registries_the_vm_cannot_reach(host, reason):
    found = private_reason(host)
    assert (found is None) if reason is None else (reason in str(found))


def test_private_registry_is_refused_with_the_fix_unless_allowed():
    reference = "127.0.0.1:5000/demo@sha256:" + "a" * 64
    with pytest.raises(LaunchSpecError, match="push the image to Artifact Registry") as refused:
        check_vm_can_pull(reference, ("storage-ro",), allow_private_registry=False)
    assert "--allow-private-registry" in str(refused.value)
    check_vm_can_pull(reference, ("storage-ro",), allow_private_registry=True)


@pytest.mark.parametrize(
    ("host", "google"),
    [
        ("us-central1-docker.pkg.dev", True),
        ("gcr.io", True),
        ("eu.gcr.io", True),
        ("docker.io", False),
        ("ghcr.io", False),
        ("pkg.dev.example.com", False),
    ],
)
def test_google_registries(host, google):
    assert is_google_registry(host) is google


def test_google_registry_needs_a_storage_read_scope():
    with pytest.raises(LaunchSpecError, match="add storage-ro to scopes"):
        check_vm_can_pull(IMAGE.reference, ("logging-write",), allow_private_registry=False)
    for scopes in (
        ("storage-ro",),
        ("cloud-platform",),
        ("https://www.googleapis.com/auth/devstorage.read_only",),
    ):
        check_vm_can_pull(IMAGE.reference, scopes, allow_private_registry=False)


def test_check_launch_covers_both_targets():
    bad = LaunchSettings(instance="x", workers="abc")
    for local in (True, False):
        with pytest.raises(LaunchSpecError, match="--workers"):
            check_launch(bad, IMAGE, local=local)
    arm = LaunchSettings(instance="x", machine_type="c4a-standard-8")
    check_launch(arm, IMAGE, local=True)  # the local engine runs what it has
    with pytest.raises(LaunchSpecError, match="linux/arm64"):
        check_launch(arm, IMAGE, local=False)
    check_launch(arm, LaunchImage(IMAGE.reference, "", (), platform="linux/arm64"), local=False)


@pytest.mark.parametrize(
    ("ranges", "allowed"),
    [
        ("203.0.113.7/32", True),
        ("203.0.113.0/24", True),  # 256 addresses: one office
        ("203.0.113.0/24,198.51.100.1/32", False),  # 257
        ("203.0.113.0/24,203.0.113.5/32", True),  # overlaps count once
        ("0.0.0.0/1,128.0.0.0/1", False),  # everyone, split in two
        ("0.0.0.0/0", False),
        ("2001:db8::7/128", True),
        ("2001:db8::/64", False),
    ],
)
def test_more_than_256_addresses_need_allow_any_source(ranges, allowed):
    if allowed:
        source_ranges(ranges, None, allow_any=False)
    else:
        with pytest.raises(LaunchSpecError, match="--allow-any-source"):
            source_ranges(ranges, None, allow_any=False)
    assert source_ranges(ranges, None, allow_any=True)


def _push_manifest(registry: Registry, repository: str, tag: str) -> str:
    """A minimal image (an empty config blob, no layers) pushed over the registry API, as
    `docker push` would; returns its digest."""
    config = b"{}"
    config_digest = f"sha256:{hashlib.sha256(config).hexdigest()}"
    base = f"{registry.url}/v2/{repository}"
    start = urllib.request.Request(f"{base}/blobs/uploads/", method="POST")
    with urllib.request.urlopen(start) as started:
        upload = urllib.parse.urljoin(base, started.headers["Location"])
    separator = "&" if "?" in upload else "?"
    blob = f"{upload}{separator}digest={config_digest}"
    octets = {"Content-Type": "application/octet-stream"}  # urllib's default is a form
    urllib.request.urlopen(urllib.request.Request(blob, config, octets, method="PUT")).close()
    media_type = "application/vnd.docker.distribution.manifest.v2+json"
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [],
        }
    ).encode()
    request = urllib.request.Request(
        f"{base}/manifests/{tag}",
        data=manifest,
        method="PUT",
        headers={"Content-Type": media_type},
    )
    with urllib.request.urlopen(request) as pushed:
        return str(pushed.headers["Docker-Content-Digest"])


@pytest.mark.cli
def test_a_deleted_image_is_missing_not_a_credentials_problem(open_registry, registry):
    """404 MANIFEST_UNKNOWN: the image is not there (push it); 401 stays credentials."""
    digest = _push_manifest(open_registry, "deleted", "v1")
    reference = f"{open_registry.host}/deleted@{digest}"
    assert anonymous_pull(reference) == "anonymous"
    assert check_registry_serves_vm(LaunchImage(reference, "", ())) is None
    gone = urllib.request.Request(
        f"{open_registry.url}/v2/deleted/manifests/{digest}", method="DELETE"
    )
    urllib.request.urlopen(gone).close()
    assert anonymous_pull(reference) == "missing"
    with pytest.raises(LaunchSpecError) as refused:
        check_registry_serves_vm(LaunchImage(reference, "", ()))
    assert str(refused.value) == (
        f"image {reference} is not in the registry ({open_registry.host} answered 404, "
        "manifest unknown): push it, `invoke build push`, or pass an --image that is there"
    )
    assert anonymous_pull(f"{open_registry.host}/never-pushed:v1") == "missing"
    assert anonymous_pull(f"{registry.host}/never-pushed:v1") == "needs-credentials"


@pytest.mark.parametrize(
    ("project", "valid"),
    [
        ("my-project", True),
        ("acme-123456", True),
        ("example.com:my-project", True),
        ("Test-Project", False),
        ("my_project", False),
        ("1project", False),
        ("abc", False),
        ("project-", False),
        ("a" * 31, False),
        ("my project", False),
    ],
)
def test_project_ids_are_checked_for_their_syntax(project, valid):
    """``Test-Project`` was reported as a missing compute.firewalls.create permission."""
    settings = LaunchSettings(instance="x", project=project)
    if valid:
        validate_settings(settings)
        return
    with pytest.raises(LaunchSpecError) as refused:
        validate_settings(settings)
    assert str(refused.value) == (
        f"project {project!r} is not a project id: 6 to 30 lowercase letters, digits and "
        "hyphens, starting with a letter (`gcloud projects list` shows the ids)"
    )


@pytest.mark.parametrize("size", [0, -5, 9, 65537])
def test_boot_disk_sizes_outside_what_compute_engine_takes_are_refused(size):
    with pytest.raises(LaunchSpecError) as refused:
        validate_settings(LaunchSettings(instance="x", boot_disk_size_gb=size))
    assert str(refused.value) == (
        f"boot-disk-size {size} is invalid: expected 10 to 65536 (GB; the Container-Optimized "
        "OS image needs 10)"
    )


@pytest.mark.parametrize("size", [10, 20, 65536])
def test_boot_disk_sizes_compute_engine_takes_pass(size):
    validate_settings(LaunchSettings(instance="x", boot_disk_size_gb=size))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            {"workers": "1000000000"},
            "--workers=1000000000: 14.40 GiB available (16.00 GiB "
            "from machine type e2-highcpu-16 less 1.60 GiB reserve) leaves 15 B per worker: "
            "expected at most 57 workers (256.00 MiB each)",
        ),
        (
            {"workers": "4", "memory_per_worker": "8GiB"},
            "--memory-per-worker: 8.00 GiB x 4 worker(s) is more than the 14.40 GiB available",
        ),
    ],
)
def test_the_sizing_plan_is_made_for_the_machine_type_up_front(flags, message):
    """The plan the entrypoint would make on the VM, from the catalogue's CPUs and memory:
    what it would refuse at boot (exit 2, the VM billing until the timeout) is refused."""
    env = dict(entrypoint_env(LaunchSettings(instance="x", **flags)))
    with pytest.raises(LaunchSpecError) as refused:
        check_machine_fits(env, "e2-highcpu-16", 16, 16384)
    assert str(refused.value).startswith(f"e2-highcpu-16 cannot hold these settings: {message}")


def test_settings_the_machine_type_holds_pass():
    for flags in ({}, {"workers": "16"}, {"workers": "4", "memory_per_worker": "3GiB"}):
        env = dict(entrypoint_env(LaunchSettings(instance="x", **flags)))
        check_machine_fits(env, "e2-highcpu-16", 16, 16384)
