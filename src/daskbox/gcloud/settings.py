"""Launch settings: task flags over ``[tool.daskbox.gcloud]`` over defaults.

``resolve_settings`` is the only place that knows the precedence and the key names; it
returns a frozen ``LaunchSettings`` that the rest of the launch reads and never edits.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from dask.utils import parse_timedelta

from daskbox import contract
from daskbox._pyproject import daskbox_table, project_name
from daskbox.errors import ConfigError, LaunchSpecError
from daskbox.gcloud import defaults

# Compute Engine resource names: lowercase letter, then letters, digits, hyphens.
_NAME = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_ZONE = re.compile(r"[a-z]+-[a-z]+[0-9]+-[a-z]")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# Project ids: 6 to 30 lowercase letters, digits and hyphens, from a letter, not ending in a
# hyphen; older ones may be domain-scoped ("example.com:my-project").
_PROJECT_ID = re.compile(r"([a-z0-9][-a-z0-9.]*[a-z0-9]:)?[a-z][-a-z0-9]{4,28}[a-z0-9]")
# What Compute Engine takes as a boot disk (GB); Container-Optimized OS images need 10.
BOOT_DISK_RANGE = (10, 65536)
# Compute Engine labels: keys start with a lowercase letter; both at most 63 characters of
# lowercase letters, digits, '-' and '_'; at most 64 labels on a resource.
_LABEL_KEY = re.compile(r"[a-z][-_a-z0-9]{0,62}")
_LABEL_VALUE = re.compile(r"[-_a-z0-9]{0,63}")
MAX_LABELS = 64
# What Compute Engine accepts as a maximum run duration.
MAX_RUN_DURATION_RANGE = (30, 120 * 24 * 3600)
RESERVED_LABELS = (
    contract.INSTANCE_LABEL,
    contract.INSTANCE_LOCK_LABEL,
    contract.INSTANCE_PROJECT_LABEL,
)


@dataclass(frozen=True)
class LaunchSettings:
    """What the user asked for; ``None`` means "not set" (the project then comes from gcloud).

    The defaults live in ``daskbox.gcloud.defaults``, which ``invoke --help launch`` shows.
    """

    instance: str
    project: str | None = None
    zone: str = defaults.ZONE
    machine_type: str = defaults.MACHINE_TYPE
    boot_disk_size_gb: int = defaults.BOOT_DISK_SIZE_GB
    network: str = defaults.NETWORK
    network_tag: str = defaults.NETWORK_TAG
    spot: bool = False
    max_run_duration: str = defaults.MAX_RUN_DURATION
    termination_action: Literal["DELETE", "STOP"] = "DELETE"
    workers: str | None = None
    threads_per_worker: str | None = None
    memory_per_worker: str | None = None
    # The entrypoint stops after this long without work, and the VM powers off with it.
    idle_timeout: str = defaults.IDLE_TIMEOUT
    # Worker VMs power off after this long without their scheduler (None: the entrypoint's
    # default, 10 minutes; "0": never).
    orphan_timeout: str | None = None
    scheduler_port: int = defaults.SCHEDULER_PORT
    dashboard_port: int = defaults.DASHBOARD_PORT
    source_range: str | None = None
    allow_any_source: bool = False
    # A registry on a private address is refused unless it is inside the VM's network.
    allow_private_registry: bool = False
    # The identity tasks read data with (gcsfs, pandas): the project's default compute
    # account unless named; give a dedicated one only the roles the job needs.
    service_account: str | None = None
    scopes: tuple[str, ...] = defaults.SCOPES
    # Local target only: mount the user's application-default credentials read-only.
    application_credentials: bool = False
    labels: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    timeout: float = defaults.TIMEOUT
    # A VM whose boot fails for good is deleted with the rest of the launch, unless kept.
    keep_failed: bool = False
    # Worker VMs: a managed instance group of VMs running only workers, joining the
    # scheduler VM over the internal network (0: the scheduler VM alone).
    worker_vms: int = defaults.WORKER_VMS
    worker_machine_type: str | None = None  # default: machine-type
    spot_workers: bool = False

    @property
    def max_run_seconds(self) -> int | None:
        """The maximum run duration in seconds, or None when it is off (``0``)."""
        return parse_duration(self.max_run_duration, "max-run-duration")


# [tool.daskbox.gcloud] key -> LaunchSettings field.
_CONFIG_KEYS = {f.name.replace("_", "-"): f.name for f in fields(LaunchSettings)}


def default_instance_name(project_root: Path) -> str:
    """``daskbox-<project name>``, cut and cleaned to a valid Compute Engine name."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", f"daskbox-{project_name(project_root)}").strip("-")
    return cleaned[:63].rstrip("-")


def _typed(name: str, value: Any, source: str) -> Any:
    """Convert one raw value (TOML or flag) to the field's type, or raise ConfigError."""
    try:
        if name in {"boot_disk_size_gb", "scheduler_port", "dashboard_port", "worker_vms"}:
            return int(str(value).removesuffix("GB"))
        if name == "timeout":
            return float(value)
        if name in {
            "spot",
            "allow_any_source",
            "allow_private_registry",
            "application_credentials",
            "spot_workers",
            "keep_failed",
        }:
            if isinstance(value, bool):
                return value
            raise ValueError(value)
        if name == "scopes":
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(item).strip() for item in items if str(item).strip())
        if name == "labels":
            if isinstance(value, str):
                value = dict(item.split("=", 1) for item in value.split(",") if item)
            return tuple(sorted((str(k), str(v)) for k, v in dict(value).items()))
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {name.replace('_', '-')} = {value!r} is not valid") from None
    return str(value)


def _config_values(table: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Typed field values from a config table; unknown keys get the closest valid key."""
    values: dict[str, Any] = {}
    for key, raw in table.items():
        if key not in _CONFIG_KEYS:
            close = difflib.get_close_matches(key, list(_CONFIG_KEYS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{source}: unknown key {key!r}{hint}")
        values[_CONFIG_KEYS[key]] = _typed(_CONFIG_KEYS[key], raw, source)
    return values


def resolve_settings(
    project_root: Path,
    flags: Mapping[str, Any],
    *,
    local: bool = False,
    invoke_config: Mapping[str, Any] | None = None,
) -> LaunchSettings:
    """Merge flags (``None`` = not given) over invoke config ``daskbox.gcloud`` over
    ``[tool.daskbox.gcloud]`` over defaults.

    Unknown config keys are refused with the closest valid key, as a typo there would
    otherwise silently launch the default machine.
    """
    source = f"[tool.daskbox.gcloud] in {project_root / 'pyproject.toml'}"
    values = _config_values(daskbox_table(project_root, "gcloud"), source)
    values.update(_config_values(invoke_config or {}, "invoke config daskbox.gcloud"))
    for name, raw in flags.items():
        if raw is not None:
            values[name] = _typed(name, raw, "flag")
    if "instance" not in values:
        base = default_instance_name(project_root)
        values["instance"] = f"{base[:57]}-local" if local else base
    settings = LaunchSettings(**values)
    validate_settings(settings)
    return settings


def parse_duration(text: str, name: str) -> int | None:
    """``"8h"``, ``"90m"``, ``"2 days"``, ``"3600"`` (seconds) -> whole seconds, with dask's
    own parser; ``""``/``"0"`` -> None (off). Refuses what Compute Engine would: less than
    30 seconds or more than 120 days."""
    if text.strip() in {"", "0"}:
        return None
    form = 'a duration such as "8h", "90m" or "2d" (30 s to 120 days), or 0 for none'
    try:
        seconds = parse_timedelta(text.replace(" ", ""), default="seconds")
    except (ValueError, KeyError, TypeError, OverflowError):
        raise LaunchSpecError(f"{name} {text!r} is invalid: expected {form}") from None
    low, high = MAX_RUN_DURATION_RANGE
    if seconds is None or not low <= seconds <= high:
        raise LaunchSpecError(f"{name} {text!r} is out of range: expected {form}")
    return int(seconds)


def _check_labels(labels: tuple[tuple[str, str], ...]) -> None:
    for key, value in labels:
        if key in RESERVED_LABELS:
            raise LaunchSpecError(
                f"label {key!r} is daskbox's own (teardown finds instances by it): pick another key"
            )
        if not _LABEL_KEY.fullmatch(key) or not _LABEL_VALUE.fullmatch(value):
            raise LaunchSpecError(
                f"label {key}={value!r} is invalid: keys start with a lowercase letter; keys "
                "and values use lowercase letters, digits, '-' and '_', at most 63 characters"
            )
    if len(labels) + len(RESERVED_LABELS) > MAX_LABELS:
        raise LaunchSpecError(
            f"{len(labels)} labels are too many: Compute Engine allows {MAX_LABELS}, "
            f"{len(RESERVED_LABELS)} of them daskbox's"
        )


def check_project_id(project: str) -> None:
    """Refuse what is not a project id's syntax (a project name, say), before gcloud would
    answer with a misleading permission error."""
    if not _PROJECT_ID.fullmatch(project):
        raise LaunchSpecError(
            f"project {project!r} is not a project id: 6 to 30 lowercase letters, digits and "
            "hyphens, starting with a letter (`gcloud projects list` shows the ids)"
        )


def validate_settings(settings: LaunchSettings) -> None:
    """Refuse values Compute Engine would refuse later, before anything is created."""
    if not _NAME.fullmatch(settings.instance):
        raise LaunchSpecError(
            f"instance name {settings.instance!r} is invalid: use lowercase letters, digits "
            "and hyphens, starting with a letter (at most 63 characters)"
        )
    if not _NAME.fullmatch(settings.network_tag):
        raise LaunchSpecError(f"network tag {settings.network_tag!r} is invalid: use a-z, 0-9, -")
    if not _ZONE.fullmatch(settings.zone):
        raise LaunchSpecError(
            f"zone {settings.zone!r} is not a zone name such as us-central1-a: "
            "see `gcloud compute zones list`"
        )
    if settings.project is not None:
        check_project_id(settings.project)
    low, high = BOOT_DISK_RANGE
    if not low <= settings.boot_disk_size_gb <= high:
        raise LaunchSpecError(
            f"boot-disk-size {settings.boot_disk_size_gb} is invalid: expected {low} to {high} "
            f"(GB; the Container-Optimized OS image needs {low})"
        )
    parse_duration(settings.max_run_duration, "max-run-duration")
    _check_labels(settings.labels)
    if not 0 < settings.timeout <= 24 * 3600:
        raise LaunchSpecError(
            f"timeout {settings.timeout:g} is invalid: expected 1 to 86400 seconds"
        )
    if settings.termination_action not in {"DELETE", "STOP"}:
        raise LaunchSpecError(
            f"termination-action {settings.termination_action!r} is invalid: use DELETE or STOP"
        )
    if not 0 <= settings.worker_vms <= defaults.MAX_WORKER_VMS:
        raise LaunchSpecError(
            f"worker-vms {settings.worker_vms} is invalid: expected 0 to {defaults.MAX_WORKER_VMS} "
            "(0: the scheduler VM alone)"
        )
    # Ports are checked with the entrypoint's own validation (gcloud.checks).
    if settings.service_account is not None and not _EMAIL.fullmatch(settings.service_account):
        raise LaunchSpecError(
            f"service account {settings.service_account!r} is not an email address such as "
            "data-reader@my-project.iam.gserviceaccount.com"
        )
    if not settings.scopes:
        raise LaunchSpecError(
            "scopes is empty: the VM needs at least storage-ro to pull its image "
            f"(default: {','.join(defaults.SCOPES)})"
        )
