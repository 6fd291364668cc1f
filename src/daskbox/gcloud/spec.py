"""LaunchSpec: everything one launch will create, decided before anything is created.

``build_spec`` is pure: settings + image + the client CA + source ranges in, one frozen
value out. ``commands``, ``cloud_init`` and ``local`` all render from it. Every launch gets
resources of its own (a network tag, one firewall rule per IP family, labels naming the
project), so teardown removes exactly what its launch added.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from daskbox import contract
from daskbox.client.connection import ClientTLS, ConnectionFile, LaunchState, Target
from daskbox.errors import LaunchSpecError
from daskbox.gcloud.machines import cos_image_family
from daskbox.gcloud.settings import LaunchSettings
from daskbox.record import ImageRecord

# Docker restarts a crashed local entrypoint a few times; a clean exit (idle) is not
# restarted, and bad settings (exit 2) never reach it: launch runs the entrypoint's
# --dry-run in the same container first. On a VM, systemd restarts (see cloud_init).
LOCAL_RESTART_POLICY = "on-failure:5"
# More addresses than this in the firewall's source ranges is more than one owner's.
MAX_SOURCE_ADDRESSES = 256


@dataclass(frozen=True)
class LaunchImage:
    """The image to run: digest-pinned reference plus what the client checks against, and
    the platform it was built for (the machine type must run it).

    ``record`` is what build and push handed over (None for an explicit ``--image``).
    """

    reference: str
    lock_hash: str
    groups: tuple[str, ...]
    extras: tuple[str, ...] = ()
    platform: str = contract.DEFAULT_PLATFORM
    record: ImageRecord | None = None


@dataclass(frozen=True)
class FirewallRule:
    """One ingress rule of a launch: one IP family (the API refuses mixed rules)."""

    name: str
    source_ranges: tuple[str, ...]


@dataclass(frozen=True)
class WorkerGroup:
    """The worker VMs of a launch: a managed instance group made from an instance template.

    Its VMs carry ``tag`` (not the scheduler's own tag, so the owner's rule never reaches
    them) and are deleted by ``termination_time`` at the latest: an absolute deadline, so
    a VM the group recreates later cannot outlive the launch's maximum run duration.
    """

    group: str
    template: str
    base_instance_name: str
    tag: str
    size: int
    machine_type: str
    spot: bool
    termination_time: str | None

    @property
    def image_family(self) -> str:
        return cos_image_family(self.machine_type)


@dataclass(frozen=True)
class LaunchSpec:
    """One daskbox instance on Compute Engine (or the local engine), fully decided."""

    instance: str
    project: str
    project_label: str
    zone: str
    machine_type: str
    boot_disk_size_gb: int
    network: str
    network_tags: tuple[str, ...]
    firewall_rules: tuple[FirewallRule, ...]
    spot: bool
    max_run_seconds: int | None
    termination_action: str
    service_account: str | None
    scopes: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]
    image: LaunchImage
    entrypoint_env: tuple[tuple[str, str], ...]
    client_ca_pem: str
    tls_days: int
    scheduler_port: int
    dashboard_port: int
    workers: WorkerGroup | None = None
    # The Compute Engine API the VMs call (to sign and fetch worker certificates).
    compute_api: str = contract.COMPUTE_API

    @property
    def instance_tag(self) -> str:
        """The network tag only this launch's instance carries (its rules target it)."""
        return self.instance

    @property
    def image_family(self) -> str:
        """``cos-stable`` or ``cos-arm64-stable``, as the machine type needs."""
        return cos_image_family(self.machine_type)

    @property
    def firewall_allow(self) -> str:
        """gcloud ``--rules`` for the scheduler and dashboard ports (a range when adjacent)."""
        low, high = sorted((self.scheduler_port, self.dashboard_port))
        return f"tcp:{low}-{high}" if high == low + 1 else f"tcp:{low},tcp:{high}"

    @property
    def rule_names(self) -> tuple[str, ...]:
        """Every rule of this launch: the owner's, plus the internal one with worker VMs."""
        owner = tuple(rule.name for rule in self.firewall_rules)
        return owner + ((internal_rule_name(self.instance),) if self.workers else ())

    @property
    def cluster_tags(self) -> tuple[str, ...]:
        """The tags of this launch's VMs: the scheduler VM's own and the worker VMs'."""
        return (self.instance_tag, self.workers.tag) if self.workers else (self.instance_tag,)


def internal_rule_name(instance: str) -> str:
    """``<instance>-internal``: the cluster's VMs to each other, over the internal network."""
    return f"{instance[:54]}-internal"


@dataclass(frozen=True)
class GroupNames:
    """The names of a launch's worker group, template, VMs and tag, from its instance."""

    group: str
    template: str
    base_instance_name: str
    tag: str


def worker_group_names(instance: str) -> GroupNames:
    """``<instance>-workers`` for the group, template and tag; VMs ``<instance>-w-xxxx``."""
    name = f"{instance[:55]}-workers"
    return GroupNames(name, name, f"{instance[:53]}-w", name)


def owner_of(description: str) -> str:
    """The scheduler instance named in a group's or template's description."""
    return description.removeprefix(GROUP_MARKER).split(" (", 1)[0]


def worker_group(
    settings: LaunchSettings, deadline: datetime.datetime | None
) -> WorkerGroup | None:
    """The launch's worker VMs (None without ``worker_vms``); names derive from the instance."""
    if not settings.worker_vms:
        return None
    names = worker_group_names(settings.instance)
    return WorkerGroup(
        group=names.group,
        template=names.template,
        base_instance_name=names.base_instance_name,
        tag=names.tag,
        size=settings.worker_vms,
        machine_type=settings.worker_machine_type or settings.machine_type,
        spot=settings.spot_workers,
        termination_time=None if deadline is None else deadline.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def firewall_rule_name(instance: str, version: int) -> str:
    """``<instance>-ipv4`` / ``<instance>-ipv6``: one rule per launch and IP family."""
    return f"{instance[:58]}-ipv{version}"


def firewall_rule_names(instance: str) -> tuple[str, ...]:
    """Every rule name a launch of ``instance`` may have created (teardown deletes these)."""
    owner = tuple(firewall_rule_name(instance, version) for version in (4, 6))
    return (*owner, internal_rule_name(instance))


def project_label(name: str) -> str:
    """A project name as a Compute Engine label value (lowercase, digits, '-', '_')."""
    return re.sub(r"[^a-z0-9_-]+", "-", name.lower())[:63]


def firewall_description(instance: str, label: str) -> str:
    """The rule's description; teardown finds a project's rules by its last part."""
    return f"daskbox: scheduler and dashboard of {instance} for their owner ({label_marker(label)})"


def internal_rule_description(instance: str, label: str) -> str:
    """The internal rule's description (teardown finds it as it finds the owner's rules)."""
    return f"daskbox: the VMs of {instance} to each other ({label_marker(label)})"


GROUP_MARKER = "daskbox: worker VMs of "


def group_description(instance: str, label: str) -> str:
    """The worker group's description: status lists daskbox's groups by its start."""
    return f"{GROUP_MARKER}{instance} ({label_marker(label)})"


def label_marker(label: str) -> str:
    return f"{contract.INSTANCE_PROJECT_LABEL}={label}"


def source_ranges(given: str | None, detected: str | None, allow_any: bool) -> tuple[str, ...]:
    """The firewall's source ranges: the given or detected caller address.

    More than ``MAX_SOURCE_ADDRESSES`` addresses in total (overlaps counted once, however
    the ranges are split: ``0.0.0.0/1,128.0.0.0/1`` is everyone) is more than one owner's
    and needs ``allow_any_source``; TLS still guards the ports, but they get scanned.
    """
    raw = given if given is not None else detected
    if raw is None:
        raise LaunchSpecError(
            "could not detect your public IP address: pass --source-range YOUR.IP/32"
        )
    networks = []
    for item in raw.split(","):
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise LaunchSpecError(
                f"source range {item.strip()!r} is not an IP address or CIDR range"
            ) from None
    v4 = [n for n in networks if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in networks if isinstance(n, ipaddress.IPv6Network)]
    total = sum(n.num_addresses for n in ipaddress.collapse_addresses(v4)) + sum(
        n.num_addresses for n in ipaddress.collapse_addresses(v6)
    )
    if total > MAX_SOURCE_ADDRESSES and not allow_any:
        raise LaunchSpecError(
            f"source ranges {raw} admit {total} addresses, more than one owner's "
            f"{MAX_SOURCE_ADDRESSES}: pass your own /32 (or /128), or add --allow-any-source "
            "if you really mean it"
        )
    return tuple(str(network) for network in networks)


def wide_range_warnings(ranges: tuple[str, ...]) -> list[str]:
    """A warning when an allowed range admits more than one owner's addresses."""
    total = sum(ipaddress.ip_network(item).num_addresses for item in ranges)
    if total <= MAX_SOURCE_ADDRESSES:
        return []
    return [
        f"warning: the firewall admits {total} addresses ({', '.join(ranges)}); the scheduler "
        "is meant for its owner only"
    ]


def firewall_rules(instance: str, ranges: tuple[str, ...]) -> tuple[FirewallRule, ...]:
    """One rule per IP family present in ``ranges``."""
    rules = []
    for version in (4, 6):
        family = tuple(r for r in ranges if ipaddress.ip_network(r).version == version)
        if family:
            rules.append(FirewallRule(firewall_rule_name(instance, version), family))
    return tuple(rules)


def entrypoint_env(settings: LaunchSettings) -> tuple[tuple[str, str], ...]:
    """The entrypoint's DASKBOX_* settings that the user chose (unset ones stay unset)."""
    chosen = {
        contract.ENV_WORKERS: settings.workers,
        contract.ENV_THREADS_PER_WORKER: settings.threads_per_worker,
        contract.ENV_MEMORY_PER_WORKER: settings.memory_per_worker,
        contract.ENV_IDLE_TIMEOUT: settings.idle_timeout,
        contract.ENV_ORPHAN_TIMEOUT: settings.orphan_timeout,
        contract.ENV_SCHEDULER_PORT: str(settings.scheduler_port),
        contract.ENV_DASHBOARD_PORT: str(settings.dashboard_port),
    }
    return tuple((key, value) for key, value in chosen.items() if value not in (None, ""))


def container_env(spec: LaunchSpec) -> tuple[tuple[str, str], ...]:
    """The container's whole environment: entrypoint settings plus the TLS file paths."""
    tls = (
        (contract.ENV_TLS_CA_FILE, f"{contract.TLS_DIR}/{contract.TLS_CA_FILE}"),
        (contract.ENV_TLS_CERT_FILE, f"{contract.TLS_DIR}/{contract.TLS_CERT_FILE}"),
        (contract.ENV_TLS_KEY_FILE, f"{contract.TLS_DIR}/{contract.TLS_KEY_FILE}"),
    )
    return spec.entrypoint_env + tls


def instance_labels(
    settings: LaunchSettings, image: LaunchImage, label: str
) -> tuple[tuple[str, str], ...]:
    """daskbox's own labels (how status and teardown find instances) plus the user's."""
    own = {
        contract.INSTANCE_LABEL: contract.INSTANCE_LABEL_VALUE,
        contract.INSTANCE_LOCK_LABEL: image.lock_hash[:16] or "unknown",
        contract.INSTANCE_PROJECT_LABEL: label,
    }
    return tuple(sorted({**dict(settings.labels), **own}.items()))


def build_spec(
    settings: LaunchSettings,
    *,
    project: str,
    project_name: str,
    image: LaunchImage,
    client_ca_pem: str,
    tls_days: int,
    ranges: tuple[str, ...],
    now: datetime.datetime | None = None,
    compute_api: str = contract.COMPUTE_API,
) -> LaunchSpec:
    """Combine resolved inputs into the LaunchSpec every renderer reads."""
    label = project_label(project_name)
    tags = (settings.network_tag, settings.instance)
    seconds = settings.max_run_seconds
    now = now or datetime.datetime.now(datetime.timezone.utc)
    workers = worker_group(
        settings, None if seconds is None else now + datetime.timedelta(seconds=seconds)
    )
    # With worker VMs the VMs read guest attributes of each other through the API.
    scopes = settings.scopes
    if workers is not None and not {"compute-ro", "compute"} & set(scopes):
        scopes = (*scopes, "compute-ro")
    return LaunchSpec(
        instance=settings.instance,
        project=project,
        project_label=label,
        zone=settings.zone,
        machine_type=settings.machine_type,
        boot_disk_size_gb=settings.boot_disk_size_gb,
        network=settings.network,
        network_tags=tuple(dict.fromkeys(tags)),
        firewall_rules=firewall_rules(settings.instance, ranges),
        spot=settings.spot,
        max_run_seconds=settings.max_run_seconds,
        termination_action=settings.termination_action,
        service_account=settings.service_account,
        scopes=scopes,
        labels=instance_labels(settings, image, label),
        image=image,
        entrypoint_env=entrypoint_env(settings),
        client_ca_pem=client_ca_pem,
        tls_days=tls_days,
        scheduler_port=settings.scheduler_port,
        dashboard_port=settings.dashboard_port,
        workers=workers,
        compute_api=compute_api,
    )


def container_args(
    spec: LaunchSpec,
    *,
    tls_source: str,
    name: str,
    env: tuple[tuple[str, str], ...] = (),
    read_only_mounts: tuple[tuple[str, str], ...] = (),
) -> list[str]:
    """The container both targets run, after ``docker run`` and its restart options.

    Host networking, so the scheduler and worker ports are the machine's own; the server's
    TLS folder mounted read-only at the path the DASKBOX_TLS_* variables name (``--mount``
    rather than ``-v``, so a Windows host path with its drive colon reads unambiguously).
    The local target adds its own ``env`` and ``read_only_mounts`` (host, container path).
    """
    argv = [
        "--name",
        name,
        "--network",
        "host",
        "--label",
        f"{contract.CONTAINER_LABEL}={spec.instance}",
        "--label",
        f"{contract.CONTAINER_PROJECT_LABEL}={spec.project_label}",
        *tls_mount(tls_source),
    ]
    for source, target in read_only_mounts:
        argv += read_only_mount(source, target)
    for key, value in (*container_env(spec), *env):
        argv += ["--env", f"{key}={value}"]
    return [*argv, spec.image.reference]


def read_only_mount(source: str, target: str) -> list[str]:
    """``--mount`` of the host's ``source`` at ``target`` in the container, read-only."""
    return ["--mount", f"type=bind,source={source},target={target},readonly"]


def tls_mount(source: str) -> list[str]:
    """``--mount`` of the server's TLS folder, read-only, at the contract's path."""
    return read_only_mount(source, contract.TLS_DIR)


def connection_for(
    spec: LaunchSpec,
    client_tls: ClientTLS,
    *,
    target: Target,
    host: str | None,
    created_at: str,
    state: LaunchState,
) -> ConnectionFile:
    """The connection file of a launch (VM or local container), the one builder for both.

    Written first with ``state="launching"`` and no address, before anything is created,
    so that `invoke teardown` always finds what the launch may have made.
    """
    gce = target == "gce"
    return ConnectionFile(
        instance=spec.instance,
        target=target,
        state=state,
        scheduler_address=f"tls://{host}:{spec.scheduler_port}" if host else "",
        # The entrypoint serves the dashboard over HTTPS with the node certificate.
        dashboard_url=f"https://{host}:{spec.dashboard_port}/status" if host else "",
        image=spec.image.reference,
        lock_hash=spec.image.lock_hash,
        groups=spec.image.groups,
        extras=spec.image.extras,
        tls=client_tls,
        project=spec.project if gce else None,
        zone=spec.zone if gce else None,
        firewall_rules=spec.rule_names if gce else (),
        created_at=created_at,
        record=spec.image.record,
        extra={"project_label": spec.project_label, **_group_extra(spec.workers)}
        if gce
        else {"container": spec.instance, "project_label": spec.project_label},
    )


def _group_extra(workers: WorkerGroup | None) -> dict[str, Any]:
    """What the connection file keeps of the worker VMs (scale and teardown read it)."""
    if workers is None:
        return {}
    return {"worker_group": workers.group, "worker_template": workers.template}
