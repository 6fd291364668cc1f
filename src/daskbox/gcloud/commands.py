"""LaunchSpec -> gcloud argv lists. Pure: nothing here runs anything.

Every command names ``--project`` (and ``--zone``) explicitly, so what is printed is what
runs regardless of the user's gcloud defaults, and asks for JSON so ``launch`` can read
the result without a second call. ``argv[0]`` is the bare name ``gcloud``; the runner
replaces it with the full path it found (``gcloud.cmd`` on Windows).
"""

from __future__ import annotations

import re

from daskbox import contract
from daskbox.gcloud.machines import COS_IMAGE_PROJECT
from daskbox.gcloud.spec import (
    GROUP_MARKER,
    FirewallRule,
    LaunchSpec,
    firewall_description,
    group_description,
    internal_rule_description,
    internal_rule_name,
    label_marker,
)

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


def firewall_create(spec: LaunchSpec, rule: FirewallRule) -> list[str]:
    """Allow the scheduler and dashboard ports from the owner's ranges to this instance only."""
    return [
        GCLOUD,
        "compute",
        "firewall-rules",
        "create",
        rule.name,
        "--project",
        spec.project,
        "--network",
        spec.network,
        "--direction",
        "INGRESS",
        "--action",
        "ALLOW",
        "--rules",
        spec.firewall_allow,
        "--target-tags",
        spec.instance_tag,
        "--source-ranges",
        ",".join(rule.source_ranges),
        "--description",
        firewall_description(spec.instance, spec.project_label),
        "--format",
        "json",
    ]


def firewall_delete(project: str, rules: tuple[str, ...]) -> list[str]:
    """Delete a launch's rules in one call, without a prompt."""
    return [GCLOUD, "compute", "firewall-rules", "delete", *rules, "--project", project, "--quiet"]


def firewall_list(project: str, label: str) -> list[str]:
    """The rules daskbox launches of this project created (found by their description)."""
    return [
        GCLOUD,
        "compute",
        "firewall-rules",
        "list",
        "--project",
        project,
        "--filter",
        f"description~{re.escape(label_marker(label))}",
        "--format",
        "json",
    ]


def _vm_flags(
    spec: LaunchSpec,
    *,
    machine_type: str,
    image_family: str,
    tags: tuple[str, ...],
    user_data_path: str,
) -> list[str]:
    """What the scheduler VM and the worker VMs' template share: COS, the disk, the
    network, labels, scopes and the public user-data with guest attributes enabled."""
    argv = [
        "--machine-type",
        machine_type,
        "--image-project",
        COS_IMAGE_PROJECT,
        "--image-family",
        image_family,
        "--boot-disk-size",
        f"{spec.boot_disk_size_gb}GB",
        "--network",
        spec.network,
        "--tags",
        ",".join(tags),
        "--labels",
        _labels(spec),
        "--scopes",
        ",".join(spec.scopes),
        "--metadata",
        "enable-guest-attributes=TRUE",
        "--metadata-from-file",
        f"user-data={user_data_path}",
    ]
    if spec.service_account:
        argv += ["--service-account", spec.service_account]
    return argv


def instance_create(spec: LaunchSpec, user_data_path: str = USER_DATA_PLACEHOLDER) -> list[str]:
    """``instances create`` on Container-Optimized OS with the launch's user-data.

    ``enable-guest-attributes`` lets the VM publish its cluster CA certificate, the only
    thing the VM hands back; the metadata itself holds public material only.
    """
    argv = [
        GCLOUD,
        "compute",
        "instances",
        "create",
        spec.instance,
        "--project",
        spec.project,
        "--zone",
        spec.zone,
        *_vm_flags(
            spec,
            machine_type=spec.machine_type,
            image_family=spec.image_family,
            tags=spec.network_tags,
            user_data_path=user_data_path,
        ),
    ]
    if spec.spot:
        argv += ["--provisioning-model", "SPOT"]
    if spec.max_run_seconds:
        argv += [
            "--max-run-duration",
            f"{spec.max_run_seconds}s",
            "--instance-termination-action",
            spec.termination_action,
        ]
    elif spec.spot:
        argv += ["--instance-termination-action", spec.termination_action]
    return [*argv, "--format", "json"]


def firewall_internal_create(spec: LaunchSpec) -> list[str]:
    """The cluster's VMs (scheduler and workers, by their tags) to each other, any TCP port
    (workers listen on ports of their own), over the internal network only: a rule with
    source tags admits nothing from outside the VPC."""
    tags = ",".join(spec.cluster_tags)
    return [
        GCLOUD,
        "compute",
        "firewall-rules",
        "create",
        internal_rule_name(spec.instance),
        "--project",
        spec.project,
        "--network",
        spec.network,
        "--direction",
        "INGRESS",
        "--action",
        "ALLOW",
        "--rules",
        "tcp",
        "--source-tags",
        tags,
        "--target-tags",
        tags,
        "--description",
        internal_rule_description(spec.instance, spec.project_label),
        "--format",
        "json",
    ]


def template_create(spec: LaunchSpec, user_data_path: str = USER_DATA_PLACEHOLDER) -> list[str]:
    """The worker VMs' instance template: the same COS VM, its own tag and machine type,
    worker-mode user-data (public: the two CA certificates, the unit), and an absolute
    termination time, so no VM the group makes outlives the launch's maximum run duration.
    Spot workers are deleted when preempted, and the group recreates them."""
    workers = spec.workers
    assert workers is not None
    argv = [
        GCLOUD,
        "compute",
        "instance-templates",
        "create",
        workers.template,
        "--project",
        spec.project,
        *_vm_flags(
            spec,
            machine_type=workers.machine_type,
            image_family=workers.image_family,
            tags=(spec.network_tags[0], workers.tag),
            user_data_path=user_data_path,
        ),
        "--description",
        group_description(spec.instance, spec.project_label),
    ]
    if workers.spot:
        argv += ["--provisioning-model", "SPOT"]
    if workers.termination_time:
        argv += ["--termination-time", workers.termination_time]
    if workers.termination_time or workers.spot:
        argv += ["--instance-termination-action", "DELETE"]
    return [*argv, "--format", "json"]


def group_create(spec: LaunchSpec) -> list[str]:
    """The managed instance group of worker VMs. A VM that stops by itself (its scheduler
    idled out and the entrypoint powered it off) is left stopped (``do-nothing``); one that
    is deleted (preempted, or by hand) is recreated to keep the group's size."""
    workers = spec.workers
    assert workers is not None
    return [
        GCLOUD,
        "compute",
        "instance-groups",
        "managed",
        "create",
        workers.group,
        "--project",
        spec.project,
        "--zone",
        spec.zone,
        "--template",
        workers.template,
        "--size",
        str(workers.size),
        "--base-instance-name",
        workers.base_instance_name,
        "--default-action-on-vm-failure",
        "do-nothing",
        "--description",
        group_description(spec.instance, spec.project_label),
        "--format",
        "json",
    ]


def group_resize(project: str, zone: str, group: str, size: int) -> list[str]:
    """Set the number of worker VMs (0 keeps the group, with no VM)."""
    return [
        GCLOUD,
        "compute",
        "instance-groups",
        "managed",
        "resize",
        group,
        "--project",
        project,
        "--zone",
        zone,
        "--size",
        str(size),
        "--format",
        "json",
    ]


def group_instances(project: str, zone: str, group: str) -> list[str]:
    """The group's VMs and what the group is doing with each."""
    return [
        GCLOUD,
        "compute",
        "instance-groups",
        "managed",
        "list-instances",
        group,
        "--project",
        project,
        "--zone",
        zone,
        "--format",
        "json",
    ]


def group_list(project: str, label: str | None = None) -> list[str]:
    """daskbox's worker groups in the project (only this project's with ``label``)."""
    marker = label_marker(label) if label is not None else GROUP_MARKER
    return [
        GCLOUD,
        "compute",
        "instance-groups",
        "managed",
        "list",
        "--project",
        project,
        "--filter",
        f"description~{re.escape(marker)}",
        "--format",
        "json",
    ]


def template_list(project: str, label: str) -> list[str]:
    """This project's worker templates (found by their description)."""
    return [
        GCLOUD,
        "compute",
        "instance-templates",
        "list",
        "--project",
        project,
        "--filter",
        f"description~{re.escape(label_marker(label))}",
        "--format",
        "json",
    ]


def group_delete(project: str, zone: str, group: str) -> list[str]:
    """Delete the group and every VM in it, without a prompt."""
    return [
        GCLOUD,
        "compute",
        "instance-groups",
        "managed",
        "delete",
        group,
        "--project",
        project,
        "--zone",
        zone,
        "--quiet",
    ]


def template_delete(project: str, template: str) -> list[str]:
    """Delete the worker VMs' template (once no group uses it), without a prompt."""
    return [
        GCLOUD,
        "compute",
        "instance-templates",
        "delete",
        template,
        "--project",
        project,
        "--quiet",
    ]


def group_resource(project: str, zone: str, group: str) -> str:
    return f"projects/{project}/zones/{zone}/instanceGroupManagers/{group}"


def template_resource(project: str, template: str) -> str:
    return f"projects/{project}/global/instanceTemplates/{template}"


def guest_attributes(project: str, zone: str, instance: str, path: str) -> list[str]:
    return [
        GCLOUD,
        "compute",
        "instances",
        "get-guest-attributes",
        instance,
        "--project",
        project,
        "--zone",
        zone,
        "--query-path",
        path,
        "--format",
        "json",
    ]


def instance_describe(project: str, zone: str, instance: str) -> list[str]:
    """The instance as JSON (launch reads the external IP from it)."""
    return [
        GCLOUD,
        "compute",
        "instances",
        "describe",
        instance,
        "--project",
        project,
        "--zone",
        zone,
        "--format",
        "json",
    ]


def machine_type_describe(project: str, zone: str, machine_type: str) -> list[str]:
    """The machine type's catalogue entry (``guestCpus``, ``memoryMb``) in the zone."""
    return [
        GCLOUD,
        "compute",
        "machine-types",
        "describe",
        machine_type,
        "--project",
        project,
        "--zone",
        zone,
        "--format",
        "json",
    ]


def instance_delete(project: str, zone: str, instance: str) -> list[str]:
    """Delete the instance without a prompt."""
    return [
        GCLOUD,
        "compute",
        "instances",
        "delete",
        instance,
        "--project",
        project,
        "--zone",
        zone,
        "--quiet",
    ]


def instance_list(project: str, label: str | None = None) -> list[str]:
    """daskbox's instances in every zone of the project (only this project's with ``label``)."""
    wanted = f"labels.{contract.INSTANCE_LABEL}={contract.INSTANCE_LABEL_VALUE}"
    if label is not None:
        wanted += f" AND labels.{contract.INSTANCE_PROJECT_LABEL}={label}"
    return [
        GCLOUD,
        "compute",
        "instances",
        "list",
        "--project",
        project,
        "--filter",
        wanted,
        "--format",
        "json",
    ]


def cluster_ca(project: str, zone: str, instance: str) -> list[str]:
    """The cluster CA certificate the VM published as a guest attribute."""
    path = f"{contract.GUEST_ATTRIBUTE_NAMESPACE}/{contract.GUEST_ATTRIBUTE_CLUSTER_CA}"
    return guest_attributes(project, zone, instance, path)


def boot_attributes(project: str, zone: str, instance: str) -> list[str]:
    """Everything the VM published in daskbox's namespace: its cluster CA and its boot."""
    return guest_attributes(project, zone, instance, f"{contract.GUEST_ATTRIBUTE_NAMESPACE}/")


def serial_port_output(project: str, zone: str, instance: str) -> list[str]:
    """Where to look when the VM never answers (named in the timeout message)."""
    return [
        GCLOUD,
        "compute",
        "instances",
        "get-serial-port-output",
        instance,
        "--project",
        project,
        "--zone",
        zone,
    ]
