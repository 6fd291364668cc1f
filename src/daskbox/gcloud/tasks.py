"""``invoke launch`` / ``teardown`` / ``status``: thin tasks over the gcloud library.

Each task resolves flag > ``[tool.daskbox.gcloud]`` > default (``settings``), builds the
input value and calls one library function; any DaskboxError becomes one line and exit 1.
"""

from __future__ import annotations

import functools
import shlex
from typing import TYPE_CHECKING, Any

from invoke.context import Context
from invoke.tasks import task

from daskbox._pyproject import find_project_root
from daskbox._task_flags import NumberFlagsTask, grouped_doc
from daskbox._tasks import one_line_errors
from daskbox.client.connection import ConnectionFile
from daskbox.errors import ConfigError
from daskbox.gcloud import defaults

if TYPE_CHECKING:  # imported by the task bodies only: `invoke --list` stays fast
    from daskbox.gcloud.settings import LaunchSettings
    from daskbox.gcloud.teardown import TeardownTarget


def _shown(value: object) -> str:
    """A default as a user types it: ``600`` for 600.0, ``a,b`` for a tuple."""
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


LAUNCH_HELP = {
    "local": "Run the container on the local Docker engine instead of a VM.",
    "image": "Image to run (default: the one `invoke build push` recorded in "
    ".daskbox/images/ for the machine type's platform).",
    "instance": "Instance (and container) name (default: daskbox-<project name>).",
    "project": "Google Cloud project (default: gcloud's configured project).",
    "zone": f"Compute Engine zone (default: {defaults.ZONE}).",
    "machine-type": f"Machine type (default: {defaults.MACHINE_TYPE}).",
    "boot-disk-size": f"Boot disk size in GB (default: {defaults.BOOT_DISK_SIZE_GB}).",
    "network-tag": f"Network tag the firewall rule targets (default: {defaults.NETWORK_TAG}).",
    "spot": "Use a Spot VM (--provisioning-model=SPOT; config: spot).",
    "no-spot": "Use a standard VM even when [tool.daskbox.gcloud] sets spot = true.",
    "max-run-duration": "Delete the VM after this long, 30s to 120d, e.g. 8h or 90m; 0 "
    f"disables (default: {defaults.MAX_RUN_DURATION}).",
    "workers": "Dask workers (default: sized by the entrypoint).",
    "threads-per-worker": "Threads per worker (default: sized by the entrypoint).",
    "memory-per-worker": "Memory per worker, e.g. 3GiB (default: sized by the entrypoint).",
    "idle-timeout": "Stop (and power the VM off) after this long idle, e.g. 30m "
    f"(default: {defaults.IDLE_TIMEOUT}).",
    "scheduler-port": f"Scheduler port (default: {defaults.SCHEDULER_PORT}).",
    "dashboard-port": f"Dashboard port (default: {defaults.DASHBOARD_PORT}).",
    "source-range": "Who may connect, e.g. 203.0.113.7/32 (default: your detected public IP).",
    "service-account": "Service account the VM (and so every task) runs as, e.g. "
    "data-reader@my-project.iam.gserviceaccount.com (default: the project's default "
    "compute account). Grant it only the roles the job needs.",
    "scopes": "Comma-separated access scopes of the VM "
    f"(default: {_shown(defaults.SCOPES)}: write logs, read Cloud Storage, pull the image).",
    "application-credentials": "--local only: mount your application-default credentials "
    "(`gcloud auth application-default login`) read-only into the container, so tasks "
    "read gs:// data as you.",
    "allow-any-source": "Allow source ranges of more than 256 addresses (not recommended).",
    "no-allow-any-source": "Refuse wide source ranges even when the config allows them.",
    "allow-private-registry": "The image's registry is on a private address the VM can "
    "reach (inside its VPC); refused otherwise.",
    "no-allow-private-registry": "Refuse a private registry even when the config allows it.",
    "worker-vms": "Add N worker VMs (a managed instance group running only Dask workers, "
    "sized by the same entrypoint, joining the scheduler VM over the internal network with "
    "mutual TLS); 0: the scheduler VM alone "
    f"(default: {defaults.WORKER_VMS}). `invoke scale N` changes it later.",
    "worker-machine-type": "Machine type of the worker VMs (default: --machine-type).",
    "spot-workers": "Run the worker VMs as Spot VMs: the cheap setup with an on-demand "
    "scheduler VM; a preempted worker VM is deleted, recreated by the group and rejoins.",
    "no-spot-workers": "Standard worker VMs even when the config sets spot-workers = true.",
    "timeout": f"Seconds to wait for the scheduler (default: {_shown(defaults.TIMEOUT)}).",
    "keep-failed": "Keep the VMs of a launch whose boot failed (the cluster refused its "
    "settings, the image could not be pulled) for inspection; deleted otherwise.",
    "no-keep-failed": "Delete them even when [tool.daskbox.gcloud] sets keep-failed = true.",
    "dry-run": "Print the commands and run nothing.",
}

# Invoke lists a task's flags alphabetically; the launch docstring groups them by purpose
# from this table, and a test checks that every flag is in exactly one group.
LAUNCH_GROUPS = {
    "what and where": "local image instance project zone",
    "the VM": "machine-type boot-disk-size network-tag spot no-spot max-run-duration",
    "worker VMs": "worker-vms worker-machine-type spot-workers no-spot-workers",
    "Dask": "workers threads-per-worker memory-per-worker idle-timeout scheduler-port "
    "dashboard-port",
    "who may connect": "source-range allow-any-source no-allow-any-source "
    "allow-private-registry no-allow-private-registry",
    "what tasks may read": "service-account scopes application-credentials",
    "the run itself": "timeout keep-failed no-keep-failed dry-run",
}
# Flags given as numbers: shown as =INT, converted (and refused in one line) by the settings.
LAUNCH_NUMBERS = (
    "boot-disk-size",
    "workers",
    "threads-per-worker",
    "scheduler-port",
    "dashboard-port",
    "worker-vms",
    "timeout",
)


def _tri_state(name: str, on: bool, off: bool) -> bool | None:
    """``--X`` -> True, ``--no-X`` -> False, neither -> None (config or default decides).

    Invoke's booleans cannot tell "not given" from False, so a ``true`` in the config
    could otherwise never be turned off from the command line.
    """
    if on and off:
        raise ConfigError(f"--{name} and --no-{name} contradict each other: pass one")
    return True if on else False if off else None


def _connect_lines(connection: ConnectionFile) -> str:
    """What launch prints last: the addresses and the line to connect from Python."""
    return "\n".join(
        [
            f"scheduler: {connection.scheduler_address}",
            f"dashboard: {connection.dashboard_url} (for your client certificate only: "
            "`invoke dashboard` opens it at a plain local URL)",
            "connect from Python:",
            "    from daskbox import connect",
            f'    client = connect("{connection.instance}")',
        ]
    )


def _gcloud_config(c: Context) -> dict[str, Any]:
    """Invoke config ``daskbox.gcloud`` (e.g. set by ``ns.configure``), between flags and
    [tool.daskbox.gcloud]."""
    daskbox: Any = c.config.get("daskbox", {}) or {}
    return dict(daskbox.get("gcloud", {}) or {})


# Long flags only: with this many flags invoke's automatic short flags run out of letters
# (it would give --allow-any-source the short flag "-", i.e. `--`).
@task(
    klass=NumberFlagsTask,
    numbers=LAUNCH_NUMBERS,
    help=LAUNCH_HELP,
    auto_shortflags=False,
)
def launch(
    c: Context,
    local: bool = False,
    image: str | None = None,
    instance: str | None = None,
    project: str | None = None,
    zone: str | None = None,
    machine_type: str | None = None,
    boot_disk_size: str | None = None,
    network_tag: str | None = None,
    spot: bool = False,
    no_spot: bool = False,
    max_run_duration: str | None = None,
    workers: str | None = None,
    threads_per_worker: str | None = None,
    memory_per_worker: str | None = None,
    idle_timeout: str | None = None,
    scheduler_port: str | None = None,
    dashboard_port: str | None = None,
    source_range: str | None = None,
    allow_any_source: bool = False,
    no_allow_any_source: bool = False,
    service_account: str | None = None,
    scopes: str | None = None,
    application_credentials: bool = False,
    allow_private_registry: bool = False,
    no_allow_private_registry: bool = False,
    worker_vms: str | None = None,
    worker_machine_type: str | None = None,
    spot_workers: bool = False,
    no_spot_workers: bool = False,
    timeout: str | None = None,
    keep_failed: bool = False,
    no_keep_failed: bool = False,
    dry_run: bool = False,
) -> None:
    flags: dict[str, Any] = {
        "instance": instance,
        "project": project,
        "zone": zone,
        "machine_type": machine_type,
        "boot_disk_size_gb": boot_disk_size,
        "network_tag": network_tag,
        "max_run_duration": max_run_duration,
        "workers": workers,
        "threads_per_worker": threads_per_worker,
        "memory_per_worker": memory_per_worker,
        "idle_timeout": idle_timeout,
        "scheduler_port": scheduler_port,
        "dashboard_port": dashboard_port,
        "source_range": source_range,
        "service_account": service_account,
        "scopes": scopes,
        "application_credentials": application_credentials or None,
        "timeout": timeout,
        "worker_vms": worker_vms,
        "worker_machine_type": worker_machine_type,
    }
    said = ["interrupted: launch stopped before anything was created"]
    with one_line_errors(lambda: said[0]):
        flags["spot"] = _tri_state("spot", spot, no_spot)
        flags["allow_any_source"] = _tri_state(
            "allow-any-source", allow_any_source, no_allow_any_source
        )
        flags["spot_workers"] = _tri_state("spot-workers", spot_workers, no_spot_workers)
        flags["keep_failed"] = _tri_state("keep-failed", keep_failed, no_keep_failed)
        flags["allow_private_registry"] = _tri_state(
            "allow-private-registry", allow_private_registry, no_allow_private_registry
        )
        if local and (worker_vms or worker_machine_type or spot_workers):
            raise ConfigError(
                "--worker-vms, --worker-machine-type and --spot-workers are for Compute Engine: "
                "the local target runs one container (drop --local, or the worker flags)"
            )
        if application_credentials and not local:
            raise ConfigError(
                "--application-credentials is for --local: a VM reads data as its service "
                "account (--service-account EMAIL)"
            )
        connection = _launch(c, flags, local=local, image=image, dry_run=dry_run)
        if connection is not None:
            said[0] = (
                f"interrupted after {connection.instance} was launched: it is running; "
                f'connect with `connect("{connection.instance}")`, delete it with '
                f"`invoke teardown{' --local' if local else ''}`"
            )
            print(_connect_lines(connection))


launch.__doc__ = grouped_doc(
    "Launch the cluster on a Compute Engine VM (or, with --local, on local Docker).",
    LAUNCH_GROUPS,
)


def _launch(
    c: Context,
    flags: dict[str, Any],
    *,
    local: bool,
    image: str | None,
    dry_run: bool,
) -> ConnectionFile | None:
    """settings -> image -> checks -> spec -> the target's launch (or its dry run)."""
    from daskbox import contract
    from daskbox._pyproject import project_name
    from daskbox.gcloud.checks import check_launch
    from daskbox.gcloud.image import resolve_image
    from daskbox.gcloud.machines import machine_platform
    from daskbox.gcloud.settings import resolve_settings
    from daskbox.gcloud.spec import build_spec
    from daskbox.gcloud.tls import (
        LONG_VALIDITY,
        certificate_validity,
        make_launch_tls,
        validity_days,
    )

    root = find_project_root()
    settings = resolve_settings(root, flags, local=local, invoke_config=_gcloud_config(c))
    where = "on local Docker" if local else f"in {settings.zone}"
    print(f"launching {settings.instance} {where}: checking settings, image and registry")
    # A VM runs the record of its machine type's platform (arm64 for t2a-*, c4a-*).
    platform = contract.DEFAULT_PLATFORM if local else machine_platform(settings.machine_type)
    chosen = resolve_image(root, image, local=local, platform=platform)
    check_launch(settings, chosen, local=local)
    # A VM deletes itself after its maximum run duration; a local container does not.
    validity = LONG_VALIDITY if local else certificate_validity(settings.max_run_seconds)
    tls = make_launch_tls(settings.instance, validity)
    if local:
        from daskbox.gcloud.local import check_argv, launch_local, local_argv

        spec = build_spec(
            settings,
            project="local",
            project_name=project_name(root),
            image=chosen,
            client_ca_pem=tls.client_ca_pem,
            tls_days=validity_days(validity),
            ranges=(),
        )
        if dry_run:
            print(f"$ {shlex.join(check_argv(root, spec))}")
            argv = local_argv(root, spec, credentials=settings.application_credentials)
            print(f"$ {shlex.join(argv)}")
            return None
        return launch_local(root, settings, spec, tls)
    from daskbox.gcloud import launch as gce
    from daskbox.gcloud.checks import check_registry_serves_vm
    from daskbox.gcloud.spec import wide_range_warnings

    warning = check_registry_serves_vm(chosen)
    if warning:
        print(warning)
    chosen_project = gce.gcloud_project(settings.project)
    spec = gce.plan_launch(
        settings,
        project=chosen_project,
        project_name=project_name(root),
        image=chosen,
        tls=tls,
        tls_days=validity_days(validity),
        compute_api=gce.compute_api(),
    )
    for line in wide_range_warnings(
        tuple(r for rule in spec.firewall_rules for r in rule.source_ranges)
    ):
        print(line)
    if dry_run:
        gce.print_plan(spec)
        return None
    return gce.launch_gce(root, settings, spec, tls)


@task(
    help={
        "instance": "Instance to delete (default: every one launched from this project).",
        "local": "Tear down the local container instead of a VM.",
        "project": "Project of an instance that has no connection file.",
        "zone": "Zone of an instance that has no connection file.",
        "dry-run": "Print the commands and run nothing.",
    }
)
def teardown(
    c: Context,
    instance: str | None = None,
    local: bool = False,
    project: str | None = None,
    zone: str | None = None,
    dry_run: bool = False,
) -> None:
    """Delete the cluster, its firewall rules and its connection file."""
    with one_line_errors(
        "interrupted: teardown stopped; whatever it had not deleted is still recorded: run "
        "`invoke teardown` again"
    ):
        from daskbox._pyproject import project_name
        from daskbox.gcloud import teardown as down
        from daskbox.gcloud.settings import resolve_settings
        from daskbox.gcloud.spec import project_label

        root = find_project_root()
        settings = resolve_settings(
            root,
            {"instance": instance, "zone": zone, "project": project},
            local=local,
            invoke_config=_gcloud_config(c),
        )
        label = project_label(project_name(root))
        named = None
        if instance is not None:
            named = functools.partial(_named_target, instance, local, settings)
        down.teardown(
            root,
            instance=instance,
            local=local,
            named=named,
            discover=functools.partial(_discover, local, settings, label),
            dry_run=dry_run,
        )


def _named_target(instance: str, local: bool, settings: LaunchSettings) -> TeardownTarget:
    """A named instance without a connection file: its project comes from the flag, the
    config or (for a VM) gcloud; its rules, worker group and template from its name (what
    does not exist is reported as already gone)."""
    from daskbox.gcloud.launch import gcloud_project
    from daskbox.gcloud.spec import firewall_rule_names, worker_group_names
    from daskbox.gcloud.teardown import TeardownTarget

    if local:
        return TeardownTarget(instance=instance, local=True)
    workers = worker_group_names(instance)
    return TeardownTarget(
        instance=instance,
        local=False,
        project=gcloud_project(settings.project, echo=None),
        zone=settings.zone,
        firewall_rules=firewall_rule_names(instance),
        group=workers.group,
        template=workers.template,
    )


def _discover(local: bool, settings: LaunchSettings, label: str) -> list[TeardownTarget]:
    """What this project launched, found by label (no usable connection file)."""
    from daskbox.gcloud.teardown import TeardownTarget

    if local:
        from daskbox.gcloud.local import project_containers

        return [TeardownTarget(name, True) for name in project_containers(label)]
    import shutil

    from daskbox.gcloud.launch import gcloud_project
    from daskbox.gcloud.teardown import discover_gce

    if shutil.which("gcloud") is None:
        return []
    return discover_gce(gcloud_project(settings.project, echo=None), label, print)


@task(
    klass=NumberFlagsTask,
    numbers=["vms"],
    help={
        "vms": f"Number of worker VMs, 0 to {defaults.MAX_WORKER_VMS} (0 keeps the group "
        "with no VM).",
        "instance": "Cluster to scale (default: the project's only one).",
        "dry-run": "Print the gcloud command and run nothing.",
    },
)
def scale(c: Context, vms: str, instance: str | None = None, dry_run: bool = False) -> None:
    """Set the number of worker VMs of a cluster launched with --worker-vms."""
    with one_line_errors(
        "interrupted: scale stopped; gcloud may still have resized the group: "
        "`invoke status` shows it"
    ):
        from daskbox.gcloud.scale import scale as resize

        try:
            size = int(vms)
        except ValueError:
            raise ConfigError(
                f"{vms!r} is not a number of worker VMs: e.g. `invoke scale 4`"
            ) from None
        resize(find_project_root(), size, instance=instance, dry_run=dry_run)


@task(
    help={
        "local": "List local daskbox containers only.",
        "project": "Google Cloud project (default: [tool.daskbox.gcloud] or gcloud's).",
    }
)
def status(c: Context, local: bool = False, project: str | None = None) -> None:
    """List daskbox clusters: zone, machine type, status, uptime and external IP."""
    with one_line_errors("interrupted: status stopped; it changes nothing"):
        import shutil

        from daskbox.gcloud.launch import gcloud_project
        from daskbox.gcloud.settings import resolve_settings
        from daskbox.gcloud.status import format_table, gce_status, local_rows

        rows = local_rows()
        if not local and shutil.which("gcloud") is None:
            print("gcloud is not installed: listing local clusters only")
        elif not local:
            root = find_project_root()
            flags = {"project": project}
            settings = resolve_settings(root, flags, invoke_config=_gcloud_config(c))
            rows = gce_status(gcloud_project(settings.project)) + rows
        print(format_table(rows) if rows else "no daskbox clusters")


__all__ = ["launch", "scale", "status", "teardown"]
