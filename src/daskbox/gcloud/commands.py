"""LaunchSpec -> gcloud argv lists. Pure: nothing here runs anything.

Every command names ``--project`` (and ``--zone``) explicitly, so what is printed is what
runs regardless of the user's gcloud defaults, and asks for JSON so ``launch`` can read
the result without a second call.
"""

from __future__ import annotations

from daskbox.contract import INSTANCE_LABEL
from daskbox.gcloud.container_declaration import container_flags
from daskbox.gcloud.spec import LaunchSpec

GCLOUD = "gcloud"
USER_DATA_PLACEHOLDER = "<user-data file>"


def _labels(spec: LaunchSpec) -> str:
    return ",".join(f"{key}={value}" for key, value in spec.labels)


def instance_resource(project: str, zone: str, instance: str) -> str:
    """The API's path of an instance, as its "was not found" errors name it."""
    return f"projects/{project}/zones/{zone}/instances/{instance}"


def firewall_resource(project: str, rule: str) -> str:
    """The API's path of a firewall rule, as its "was not found" errors name it."""
    return f"projects/{project}/global/firewalls/{rule}"


def config_list() -> list[str]:
    """Account, project and credential settings in one call (gcloud starts slowly)."""
    return [GCLOUD, "config", "list", "--format", "json"]


def firewall_describe(project: str, rule: str) -> list[str]:
    """The shared rule as JSON (its current source ranges), or "not found"."""
    return [GCLOUD, "compute", "firewall-rules", "describe", rule, "--project", project,
            "--format", "json"]  # fmt: skip


def firewall_create(spec: LaunchSpec) -> list[str]:
    """Allow the scheduler and dashboard ports from the owner's range to the daskbox tag."""
    return [
        GCLOUD, "compute", "firewall-rules", "create", spec.firewall_rule,
        "--project", spec.project,
        "--network", spec.network,
        "--direction", "INGRESS",
        "--action", "ALLOW",
        "--rules", spec.firewall_allow,
        "--target-tags", spec.network_tag,
        "--source-ranges", ",".join(spec.source_ranges),
        "--description", "daskbox: Dask scheduler and dashboard, reachable by their owner only",
        "--format", "json",
    ]  # fmt: skip


def firewall_update(spec: LaunchSpec, ranges: tuple[str, ...]) -> list[str]:
    """Widen an existing shared rule to also admit this launch's caller."""
    return [GCLOUD, "compute", "firewall-rules", "update", spec.firewall_rule,
            "--project", spec.project, "--source-ranges", ",".join(ranges),
            "--format", "json"]  # fmt: skip


def firewall_delete(project: str, rule: str) -> list[str]:
    """Delete the shared rule without a prompt (teardown, or a launch's rollback)."""
    return [GCLOUD, "compute", "firewall-rules", "delete", rule, "--project", project, "--quiet"]


def instance_create(spec: LaunchSpec, user_data_path: str = USER_DATA_PLACEHOLDER) -> list[str]:
    """``instances create`` (cloud-init, default) or ``create-with-container`` (legacy)."""
    verb = "create" if spec.method == "cloud-init" else "create-with-container"
    argv = [
        GCLOUD, "compute", "instances", verb, spec.instance,
        "--project", spec.project,
        "--zone", spec.zone,
        "--machine-type", spec.machine_type,
        "--image-project", "cos-cloud",
        "--image-family", "cos-stable",
        "--boot-disk-size", f"{spec.boot_disk_size_gb}GB",
        "--network", spec.network,
        "--tags", spec.network_tag,
        "--labels", _labels(spec),
        "--scopes", ",".join(spec.scopes),
        "--metadata-from-file", f"user-data={user_data_path}",
    ]  # fmt: skip
    if spec.service_account:
        argv += ["--service-account", spec.service_account]
    if spec.spot:
        argv += ["--provisioning-model", "SPOT"]
    if spec.max_run_duration:
        argv += [
            "--max-run-duration", spec.max_run_duration,
            "--instance-termination-action", spec.termination_action,
        ]  # fmt: skip
    elif spec.spot:
        argv += ["--instance-termination-action", spec.termination_action]
    if spec.method == "container-declaration":
        argv += container_flags(spec)
    return [*argv, "--format", "json"]


def instance_describe(project: str, zone: str, instance: str) -> list[str]:
    """The instance as JSON (launch polls it for the external IP)."""
    return [GCLOUD, "compute", "instances", "describe", instance, "--project", project,
            "--zone", zone, "--format", "json"]  # fmt: skip


def instance_delete(project: str, zone: str, instance: str) -> list[str]:
    """Delete the instance without a prompt."""
    return [GCLOUD, "compute", "instances", "delete", instance, "--project", project,
            "--zone", zone, "--quiet"]  # fmt: skip


def instance_list(project: str) -> list[str]:
    """Every daskbox-labelled instance in every zone of the project."""
    return [GCLOUD, "compute", "instances", "list", "--project", project,
            "--filter", f"labels.{INSTANCE_LABEL}:*", "--format", "json"]  # fmt: skip


def serial_port_output(project: str, zone: str, instance: str) -> list[str]:
    """Where to look when the VM never answers (named in the timeout message)."""
    return [GCLOUD, "compute", "instances", "get-serial-port-output", instance,
            "--project", project, "--zone", zone]  # fmt: skip
