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
from daskbox._tasks import one_line_errors
from daskbox.client.connection import ConnectionFile
from daskbox.errors import ConfigError

if TYPE_CHECKING:  # imported by the task bodies only: `invoke --list` stays fast
    from daskbox.gcloud.settings import LaunchSettings
    from daskbox.gcloud.teardown import TeardownTarget

LAUNCH_HELP = {
    "local": "Run the container on the local Docker engine instead of a VM.",
    "image": "Image to run (default: the one `invoke build push` recorded in "
    ".daskbox/images/).",
    "instance": "Instance (and container) name (default: daskbox-<project name>).",
    "project": "Google Cloud project (default: gcloud's configured project).",
    "zone": "Compute Engine zone (default: us-central1-a).",
    "machine-type": "Machine type (default: e2-highcpu-16).",
    "boot-disk-size": "Boot disk size in GB (default: 20).",
    "network-tag": "Network tag the firewall rule targets (default: daskbox).",
    "spot": "Use a Spot VM (--provisioning-model=SPOT; config: spot).",
    "no-spot": "Use a standard VM even when [tool.daskbox.gcloud] sets spot = true.",
    "max-run-duration": "Delete the VM after this long, e.g. 8h; 0 disables (default: 8h).",
    "workers": "Dask workers (default: sized by the entrypoint).",
    "threads-per-worker": "Threads per worker (default: sized by the entrypoint).",
    "memory-per-worker": "Memory per worker, e.g. 3GiB (default: sized by the entrypoint).",
    "idle-timeout": "Stop (and power the VM off) after this long idle, e.g. 30m (default: 1h).",
    "scheduler-port": "Scheduler port (default: 8786).",
    "dashboard-port": "Dashboard port (default: 8787).",
    "method": "cloud-init (default) or container-declaration (deprecated by Google).",
    "source-range": "Who may connect, e.g. 203.0.113.7/32 (default: your detected public IP).",
    "service-account": "Service account the VM (and so every task) runs as, e.g. "
    "data-reader@my-project.iam.gserviceaccount.com (default: the project's default "
    "compute account). Grant it only the roles the job needs.",
    "scopes": "Comma-separated access scopes of the VM (default: logging-write,storage-ro: "
    "write logs, read Cloud Storage, pull the image).",
    "application-credentials": "--local only: mount your application-default credentials "
    "(`gcloud auth application-default login`) read-only into the container, so tasks "
    "read gs:// data as you.",
    "allow-any-source": "Allow a 0.0.0.0/0 source range (not recommended).",
    "no-allow-any-source": "Refuse 0.0.0.0/0 even when the config allows it.",
    "timeout": "Seconds to wait for the scheduler (default: 600).",
    "dry-run": "Print the commands and run nothing.",
}


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
@task(help=LAUNCH_HELP, auto_shortflags=False)
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
    method: str | None = None,
    source_range: str | None = None,
    allow_any_source: bool = False,
    no_allow_any_source: bool = False,
    service_account: str | None = None,
    scopes: str | None = None,
    application_credentials: bool = False,
    timeout: str | None = None,
    dry_run: bool = False,
) -> None:
    """Launch the cluster on a Compute Engine VM (or, with --local, on local Docker)."""
    from daskbox.gcloud.image import resolve_image
    from daskbox.gcloud.settings import resolve_settings
    from daskbox.gcloud.spec import build_spec, wide_range_warnings
    from daskbox.gcloud.tls import LONG_VALIDITY, certificate_validity, make_tls_material

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
        "method": method,
        "source_range": source_range,
        "service_account": service_account,
        "scopes": scopes,
        "application_credentials": application_credentials or None,
        "timeout": timeout,
    }
    with one_line_errors():
        flags["spot"] = _tri_state("spot", spot, no_spot)
        flags["allow_any_source"] = _tri_state(
            "allow-any-source", allow_any_source, no_allow_any_source
        )
        root = find_project_root()
        settings = resolve_settings(root, flags, local=local, invoke_config=_gcloud_config(c))
        if application_credentials and not local:
            raise ConfigError(
                "--application-credentials is for --local: a VM reads data as its service "
                "account (--service-account EMAIL)"
            )
        # A VM deletes itself after its maximum run duration; a local container does not.
        validity = LONG_VALIDITY if local else certificate_validity(settings.max_run_duration)
        tls = make_tls_material(settings.instance, validity)
        if local:
            from daskbox.gcloud.local import launch_local, local_argv

            chosen = resolve_image(root, image, local=True)
            spec = build_spec(
                settings, project="local", image=chosen, server_tls=tls.server, ranges=()
            )
            if dry_run:
                argv = local_argv(root, spec, credentials=settings.application_credentials)
                print(f"$ {shlex.join(argv)}")
                return
            connection = launch_local(root, settings, spec, tls)
        else:
            from daskbox.gcloud import launch as gce

            chosen_project = gce.gcloud_project(settings.project)
            chosen = resolve_image(root, image, local=False)
            spec = gce.plan_launch(settings, project=chosen_project, image=chosen, tls=tls)
            for warning in wide_range_warnings(spec.source_ranges):
                print(warning)
            if dry_run:
                gce.print_plan(spec)
                return
            connection = gce.launch_gce(root, settings, spec, tls)
        print(_connect_lines(connection))


@task(
    help={
        "instance": "Instance to delete (default: the one launched from this project).",
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
    """Delete the cluster, its firewall rule (if unused) and its connection file."""
    from daskbox.gcloud import teardown as down
    from daskbox.gcloud.settings import resolve_settings

    with one_line_errors():
        root = find_project_root()
        fallback = None
        if instance is not None:
            settings = resolve_settings(
                root,
                {"instance": instance, "zone": zone},
                local=local,
                invoke_config=_gcloud_config(c),
            )
            fallback = functools.partial(_named_target, instance, local, project, settings)
        down.teardown(root, instance=instance, local=local, fallback=fallback, dry_run=dry_run)


def _named_target(
    instance: str, local: bool, project: str | None, settings: LaunchSettings
) -> TeardownTarget:
    """A named instance without a connection file: its project comes from the flag, the
    config or (for a VM, one gcloud call) gcloud's configured project."""
    from daskbox.gcloud.launch import gcloud_project
    from daskbox.gcloud.teardown import TeardownTarget

    if not (project or settings.project or local):
        project = gcloud_project(None, echo=None)
    return TeardownTarget(
        instance=instance, local=local, project=project or settings.project, zone=settings.zone
    )


@task(
    help={
        "local": "List local daskbox containers only.",
        "project": "Google Cloud project (default: [tool.daskbox.gcloud] or gcloud's).",
    }
)
def status(c: Context, local: bool = False, project: str | None = None) -> None:
    """List daskbox clusters: zone, machine type, status, uptime and external IP."""
    import shutil

    from daskbox.gcloud.launch import gcloud_project
    from daskbox.gcloud.settings import resolve_settings
    from daskbox.gcloud.status import format_table, gce_status, local_rows

    with one_line_errors():
        rows = local_rows()
        if not local and shutil.which("gcloud") is None:
            print("gcloud is not installed: listing local clusters only")
        elif not local:
            root = find_project_root()
            flags = {"project": project}
            settings = resolve_settings(root, flags, invoke_config=_gcloud_config(c))
            rows = gce_status(gcloud_project(settings.project)) + rows
        print(format_table(rows) if rows else "no daskbox clusters")


__all__ = ["launch", "status", "teardown"]
