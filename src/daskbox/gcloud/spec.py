"""LaunchSpec: everything one launch will create, decided before anything is created.

``build_spec`` is pure: settings + image + TLS + source range in, one frozen value out.
``commands``, ``cloud_init``, ``container_declaration`` and ``local`` all render from it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from daskbox import contract
from daskbox.client.connection import ClientTLS, ConnectionFile, Target
from daskbox.contract import CONTAINER_LABEL, CONTAINER_NAME, TLS_DIR
from daskbox.errors import LaunchSpecError
from daskbox.gcloud.settings import LaunchSettings, Method
from daskbox.gcloud.tls import ServerTLS
from daskbox.record import ImageRecord

# Docker restarts a crashed entrypoint a few times; a clean exit (idle) is not restarted.
RESTART_POLICY = "on-failure:5"


@dataclass(frozen=True)
class LaunchImage:
    """The image to run: digest-pinned reference plus what the client checks against.

    ``record`` is what build and push handed over (None for an explicit ``--image``).
    """

    reference: str
    lock_hash: str
    groups: tuple[str, ...]
    extras: tuple[str, ...] = ()
    platform: str = contract.DEFAULT_PLATFORM
    record: ImageRecord | None = None


@dataclass(frozen=True)
class LaunchSpec:
    """One daskbox instance on Compute Engine (or the local engine), fully decided."""

    instance: str
    project: str
    zone: str
    machine_type: str
    boot_disk_size_gb: int
    network: str
    network_tag: str
    firewall_rule: str
    source_ranges: tuple[str, ...]
    spot: bool
    max_run_duration: str | None
    termination_action: str
    service_account: str | None
    scopes: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]
    image: LaunchImage
    entrypoint_env: tuple[tuple[str, str], ...]
    server_tls: ServerTLS
    scheduler_port: int
    dashboard_port: int
    method: Method

    @property
    def firewall_allow(self) -> str:
        """gcloud ``--rules`` for the scheduler and dashboard ports (a range when adjacent)."""
        low, high = sorted((self.scheduler_port, self.dashboard_port))
        return f"tcp:{low}-{high}" if high == low + 1 else f"tcp:{low},tcp:{high}"


def firewall_rule_name(network_tag: str, scheduler_port: int, dashboard_port: int) -> str:
    """One rule per tag and port pair, shared by every daskbox instance with that tag."""
    return f"{network_tag}-allow-tcp-{scheduler_port}-{dashboard_port}"[:63]


def source_ranges(given: str | None, detected: str | None, allow_any: bool) -> tuple[str, ...]:
    """The firewall's source ranges: the given or detected caller address as a /32.

    ``0.0.0.0/0`` would open the scheduler to the internet (TLS still guards it, but the
    ports are scanned within minutes), so it needs ``allow_any_source``.
    """
    raw = given if given is not None else detected
    if raw is None:
        raise LaunchSpecError(
            "could not detect your public IP address: pass --source-range YOUR.IP/32"
        )
    ranges = []
    for item in raw.split(","):
        try:
            network = ipaddress.ip_network(item.strip(), strict=False)
        except ValueError:
            raise LaunchSpecError(
                f"source range {item.strip()!r} is not an IP address or CIDR range"
            ) from None
        if network.prefixlen == 0 and not allow_any:
            raise LaunchSpecError(
                f"source range {network} opens the cluster to everyone: pass your own /32, "
                "or add --allow-any-source if you really mean it"
            )
        ranges.append(str(network))
    return tuple(ranges)


# Wider than this is more than one household or office: worth a warning.
_NARROWEST_WIDE_PREFIX = {4: 24, 6: 64}


def wide_range_warnings(ranges: tuple[str, ...]) -> list[str]:
    """One warning per range wider than a /24 (IPv4) or /64 (IPv6), apart from the
    explicitly allowed ``0.0.0.0/0``, which ``source_ranges`` already refused or allowed."""
    warnings = []
    for item in ranges:
        network = ipaddress.ip_network(item)
        if 0 < network.prefixlen < _NARROWEST_WIDE_PREFIX[network.version]:
            warnings.append(
                f"warning: source range {network} admits {network.num_addresses} addresses; "
                "the scheduler is meant for its owner only (pass your own /32)"
            )
    return warnings


def entrypoint_env(settings: LaunchSettings) -> tuple[tuple[str, str], ...]:
    """The entrypoint's DASKBOX_* settings that the user chose (unset ones stay unset)."""
    chosen = {
        contract.ENV_WORKERS: settings.workers,
        contract.ENV_THREADS_PER_WORKER: settings.threads_per_worker,
        contract.ENV_MEMORY_PER_WORKER: settings.memory_per_worker,
        contract.ENV_IDLE_TIMEOUT: settings.idle_timeout,
        contract.ENV_SCHEDULER_PORT: str(settings.scheduler_port),
        contract.ENV_DASHBOARD_PORT: str(settings.dashboard_port),
    }
    return tuple((key, value) for key, value in chosen.items() if value not in (None, ""))


def container_env(spec: LaunchSpec) -> tuple[tuple[str, str], ...]:
    """The container's whole environment: entrypoint settings plus the TLS file paths."""
    tls = (
        (contract.ENV_TLS_CA_FILE, f"{TLS_DIR}/{contract.TLS_CA_FILE}"),
        (contract.ENV_TLS_CERT_FILE, f"{TLS_DIR}/{contract.TLS_CERT_FILE}"),
        (contract.ENV_TLS_KEY_FILE, f"{TLS_DIR}/{contract.TLS_KEY_FILE}"),
    )
    return spec.entrypoint_env + tls


def tls_files(spec: LaunchSpec) -> tuple[tuple[str, str], ...]:
    """(file name inside TLS_DIR, PEM text) for the server side."""
    return (
        (contract.TLS_CA_FILE, spec.server_tls.ca_pem),
        (contract.TLS_CERT_FILE, spec.server_tls.cert_pem),
        (contract.TLS_KEY_FILE, spec.server_tls.key_pem),
    )


def instance_labels(settings: LaunchSettings, image: LaunchImage) -> tuple[tuple[str, str], ...]:
    """daskbox's own labels (how status and teardown find instances) plus the user's."""
    own = {
        contract.INSTANCE_LABEL: contract.INSTANCE_LABEL_VALUE,
        contract.INSTANCE_LOCK_LABEL: image.lock_hash[:16] or "unknown",
    }
    return tuple(sorted({**own, **dict(settings.labels)}.items()))


def build_spec(
    settings: LaunchSettings,
    *,
    project: str,
    image: LaunchImage,
    server_tls: ServerTLS,
    ranges: tuple[str, ...],
) -> LaunchSpec:
    """Combine resolved inputs into the LaunchSpec every renderer reads."""
    duration = settings.max_run_duration if settings.max_run_duration not in {"", "0"} else None
    return LaunchSpec(
        instance=settings.instance,
        project=project,
        zone=settings.zone,
        machine_type=settings.machine_type,
        boot_disk_size_gb=settings.boot_disk_size_gb,
        network=settings.network,
        network_tag=settings.network_tag,
        firewall_rule=firewall_rule_name(
            settings.network_tag, settings.scheduler_port, settings.dashboard_port
        ),
        source_ranges=ranges,
        spot=settings.spot,
        max_run_duration=duration,
        termination_action=settings.termination_action,
        service_account=settings.service_account,
        scopes=settings.scopes,
        labels=instance_labels(settings, image),
        image=image,
        entrypoint_env=entrypoint_env(settings),
        server_tls=server_tls,
        scheduler_port=settings.scheduler_port,
        dashboard_port=settings.dashboard_port,
        method=settings.method,
    )


def docker_run_argv(
    spec: LaunchSpec,
    *,
    tls_dir: str = TLS_DIR,
    name: str = CONTAINER_NAME,
    env: tuple[tuple[str, str], ...] = (),
    volumes: tuple[str, ...] = (),
) -> list[str]:
    """The one ``docker run`` both the VM and the local target execute.

    Host networking so the scheduler and worker ports are the VM's own; the TLS folder
    is mounted read-only at the path the DASKBOX_TLS_* variables name. The local target
    adds its own ``env`` and read-only ``volumes`` (``host:container``).
    """
    argv = [
        "docker",
        "run",
        "--detach",
        "--name",
        name,
        "--network",
        "host",
        "--restart",
        RESTART_POLICY,
        "--label",
        f"{CONTAINER_LABEL}={spec.instance}",
        "--volume",
        f"{tls_dir}:{TLS_DIR}:ro",
    ]
    for volume in volumes:
        argv += ["--volume", f"{volume}:ro"]
    for key, value in (*container_env(spec), *env):
        argv += ["--env", f"{key}={value}"]
    return [*argv, spec.image.reference]


def connection_for(
    spec: LaunchSpec, client_tls: ClientTLS, *, target: Target, host: str | None, created_at: str
) -> ConnectionFile:
    """The connection file of a launch (VM or local container), the one builder for both.

    ``host`` is None while a VM has no external IP yet: launch writes the file that early
    so that `invoke teardown` always finds what it created, with empty addresses.
    """
    gce = target == "gce"
    return ConnectionFile(
        instance=spec.instance,
        target=target,
        scheduler_address=f"tls://{host}:{spec.scheduler_port}" if host else "",
        # The entrypoint serves the dashboard over HTTPS with the server certificate.
        dashboard_url=f"https://{host}:{spec.dashboard_port}/status" if host else "",
        image=spec.image.reference,
        lock_hash=spec.image.lock_hash,
        groups=spec.image.groups,
        extras=spec.image.extras,
        tls=client_tls,
        project=spec.project if gce else None,
        zone=spec.zone if gce else None,
        firewall_rule=spec.firewall_rule if gce else None,
        created_at=created_at,
        record=spec.image.record,
        extra={"network_tag": spec.network_tag, "method": spec.method}
        if gce
        else {"container": spec.instance},
    )
