"""Settings: flag > [tool.daskbox.gcloud] > default, and refusals before anything runs."""

from __future__ import annotations

import pytest

from daskbox.errors import ConfigError, LaunchSpecError
from daskbox.gcloud.settings import LaunchSettings, resolve_settings
from daskbox.gcloud.spec import entrypoint_env, source_ranges, wide_range_warnings


@pytest.fixture
def root(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "My_Project"\n\n[tool.daskbox.gcloud]\n'
        'zone = "europe-west1-b"\nmachine-type = "n2-standard-8"\nspot = true\n'
        'labels = { team = "data" }\n'
    )
    return tmp_path


def test_flags_over_config_over_defaults(root):
    settings = resolve_settings(root, {"machine_type": "e2-standard-4", "zone": None})
    assert settings.machine_type == "e2-standard-4"  # flag
    assert settings.zone == "europe-west1-b"  # config
    assert settings.spot is True  # config
    assert settings.boot_disk_size_gb == LaunchSettings.boot_disk_size_gb  # default
    assert settings.labels == (("team", "data"),)
    assert settings.instance == "daskbox-my-project"


def test_service_account_and_scopes_from_flags(root):
    account = "reader@p.iam.gserviceaccount.com"
    settings = resolve_settings(root, {"service_account": account, "scopes": "storage-ro,bigquery"})
    assert settings.service_account == account
    assert settings.scopes == ("storage-ro", "bigquery")
    # least privilege by default: the project's default account, two scopes
    default = resolve_settings(root, {})
    assert (default.service_account, default.scopes) == (None, ("logging-write", "storage-ro"))


def test_local_instance_name_differs(root):
    assert resolve_settings(root, {}, local=True).instance == "daskbox-my-project-local"


def test_unknown_key_suggests_the_right_one(root):
    (root / "pyproject.toml").write_text('[tool.daskbox.gcloud]\nmachine_type = "e2-micro"\n')
    with pytest.raises(
        ConfigError, match="unknown key 'machine_type' \\(did you mean 'machine-type'\\?\\)"
    ):
        resolve_settings(root, {})


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"instance": "Bad_Name"}, "instance name 'Bad_Name' is invalid"),
        ({"zone": "central"}, "zone 'central' is not a zone name"),
        ({"max_run_duration": "eight hours"}, "max-run-duration 'eight hours' is invalid"),
        ({"max_run_duration": "200d"}, "max-run-duration '200d' is out of range"),
        ({"timeout": "0"}, "timeout 0 is invalid"),
        ({"service_account": "data-reader"}, "service account 'data-reader' is not an email"),
        ({"scopes": " , "}, "scopes is empty: the VM needs at least storage-ro"),
    ],
)
def test_invalid_values_are_refused(root, flags, message):
    with pytest.raises(LaunchSpecError, match=message):
        resolve_settings(root, flags)


def test_non_numeric_port_is_a_config_error(root):
    with pytest.raises(ConfigError, match="scheduler-port = 'abc' is not valid"):
        resolve_settings(root, {"scheduler_port": "abc"})


@pytest.mark.parametrize(
    ("given", "detected", "allow", "expected"),
    [
        ("198.51.100.4", None, False, ("198.51.100.4/32",)),
        (None, "192.0.2.9/32", False, ("192.0.2.9/32",)),
        ("198.51.100.4/32,192.0.2.0/25", "1.1.1.1/32", False, ("198.51.100.4/32", "192.0.2.0/25")),
        ("0.0.0.0/0", None, True, ("0.0.0.0/0",)),
    ],
)
def test_source_ranges(given, detected, allow, expected):
    assert source_ranges(given, detected, allow) == expected


@pytest.mark.parametrize(
    ("given", "detected", "message"),
    [
        (None, None, "could not detect your public IP address: pass --source-range"),
        ("0.0.0.0/0", None, "--allow-any-source"),
        ("my laptop", None, "'my laptop' is not an IP address"),
    ],
)
def test_source_range_refusals(given, detected, message):
    with pytest.raises(LaunchSpecError, match=message):
        source_ranges(given, detected, allow_any=False)


@pytest.mark.parametrize(
    ("ranges", "warned"),
    [
        (("198.51.100.4/32", "192.0.2.0/25"), False),
        (("10.0.0.0/8",), True),  # allowed with --allow-any-source, still said out loud
        (("0.0.0.0/0",), True),
        (("2001:db8::7/128",), False),
    ],
)
def test_wide_allowed_ranges_are_warned_about(ranges, warned):
    warnings = wide_range_warnings(ranges)
    assert bool(warnings) is warned
    assert all("the scheduler is meant for its owner only" in w for w in warnings)


def test_default_instance_name_uses_the_project_name(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.poetry]\nname = "Data.Science__Box"\n')
    assert resolve_settings(tmp_path, {}).instance == "daskbox-data-science-box"


def test_the_orphan_timeout_is_a_config_key_that_reaches_the_entrypoint(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "app"\n\n[tool.daskbox.gcloud]\norphan-timeout = "2m"\n'
    )
    settings = resolve_settings(tmp_path, {})
    assert dict(entrypoint_env(settings))["DASKBOX_ORPHAN_TIMEOUT"] == "2m"
