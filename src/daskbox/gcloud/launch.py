"""Launch on Compute Engine as a transaction: record the intent, create, wait, pin, confirm.

1. The connection file is written first, with ``state = "launching"``, the instance, its
   zone and project, the firewall rules it will create and the client's credentials;
   the instance also carries labels naming the project. Whatever happens next, `invoke
   teardown` finds everything this launch may have made, by the file or by the labels.
2. The firewall rules and the instance are created side by side. If one fails and the
   other was made, that one is deleted again and the record removed: nothing is left.
3. Launch waits for the VM to publish its cluster CA certificate (a guest attribute),
   pins it, and waits for the scheduler to answer over TLS; then the file says ``ready``.
   A VM that never gets that far is left for inspection, the error naming its serial
   port output and `invoke teardown`.

Ctrl-C anywhere prints one line: what was undone, what is left, the command that deletes
it. After an interrupt nothing more is sent to the cloud: the record stays, so teardown
deletes whatever the interrupted gcloud calls did create.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
import shlex
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from daskbox import contract
from daskbox._files import write_atomically
from daskbox._tasks import Progress
from daskbox.client.connection import ClientTLS, ConnectionFile, LaunchState, connection_path
from daskbox.errors import GcloudError, Interrupted
from daskbox.gcloud import commands
from daskbox.gcloud._gcloud import (
    GcloudCommandError,
    parse_json,
    require_gcloud,
    run_gcloud,
    run_gcloud_all,
    run_gcloud_json,
)
from daskbox.gcloud.boot_watch import (
    BootFailed,
    BootWatcher,
    boot_failure,
    give_up_on,
    published,
)
from daskbox.gcloud.checks import check_machine_fits
from daskbox.gcloud.cloud_init import render_user_data, render_worker_user_data
from daskbox.gcloud.ready import poll, wait_for_scheduler
from daskbox.gcloud.settings import LaunchSettings, check_project_id
from daskbox.gcloud.spec import (
    LaunchImage,
    LaunchSpec,
    build_spec,
    connection_for,
    entrypoint_env,
    source_ranges,
)
from daskbox.gcloud.teardown import target_for, teardown_gce
from daskbox.gcloud.tls import LaunchTLS, pin_cluster_ca

# A plain-text "what is my IP" service; DASKBOX_IP_ECHO_URL overrides it (CI has no internet).
IP_ECHO_URL = "https://checkip.amazonaws.com"


def detect_public_ip(url: str | None = None, timeout: float = 5.0) -> str | None:
    """The caller's public address as ``a.b.c.d/32`` (or an IPv6 ``/128``), or None when
    it cannot be told."""
    try:
        chosen = url or os.environ.get("DASKBOX_IP_ECHO_URL", IP_ECHO_URL)
        with urllib.request.urlopen(chosen, timeout=timeout) as response:
            text = response.read(64).decode().strip()
        address = ipaddress.ip_address(text)
    except (OSError, ValueError):  # unreachable, or the service answered something else
        return None
    return f"{address}/{address.max_prefixlen}"


def gcloud_project(project: str | None, echo: Progress | None = print) -> str:
    """``project``, else gcloud's: its ``CLOUDSDK_CORE_PROJECT`` (which gcloud itself ranks
    above its configuration files), else one ``gcloud config list``, which also tells
    whether gcloud is authenticated (gcloud starts slowly: no second call)."""
    if project:
        return project
    if os.environ.get("CLOUDSDK_CORE_PROJECT"):
        check_project_id(os.environ["CLOUDSDK_CORE_PROJECT"])
        return os.environ["CLOUDSDK_CORE_PROJECT"]
    config: dict[str, Any] = run_gcloud_json(commands.config_list(), echo) or {}
    core, auth = config.get("core", {}), config.get("auth", {})
    credentials_disabled = str(auth.get("disable_credentials", "")).lower() in {"true", "1"}
    if not core.get("account") and not credentials_disabled:
        raise GcloudError("gcloud is not authenticated: run `gcloud auth login`")
    chosen = core.get("project")
    if not chosen:
        raise GcloudError(
            "no Google Cloud project set: pass --project, set project in [tool.daskbox.gcloud], "
            "or run `gcloud config set project PROJECT`"
        )
    check_project_id(str(chosen))
    return str(chosen)


def compute_api() -> str:
    """The Compute Engine endpoint the VMs call: gcloud's override when one is set in the
    environment (``CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE``, e.g. a Private Service Connect
    endpoint), else Google's public one."""
    return os.environ.get("CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE") or contract.COMPUTE_API


def plan_launch(
    settings: LaunchSettings,
    *,
    project: str,
    project_name: str,
    image: LaunchImage,
    tls: LaunchTLS,
    tls_days: int,
    detect_ip: Callable[[], str | None] = detect_public_ip,
    compute_api: str = contract.COMPUTE_API,
) -> LaunchSpec:
    """Decide everything (pure apart from IP detection, skipped when a range is given)."""
    detected = None if settings.source_range is not None else detect_ip()
    ranges = source_ranges(settings.source_range, detected, settings.allow_any_source)
    return build_spec(
        settings,
        project=project,
        project_name=project_name,
        image=image,
        client_ca_pem=tls.client_ca_pem,
        tls_days=tls_days,
        ranges=ranges,
        compute_api=compute_api,
    )


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class LaunchRecord:
    """The connection file as the launch's journal, plus what the launch set in motion."""

    def __init__(self, path: Path, spec: LaunchSpec, client: ClientTLS) -> None:
        self.path, self.spec, self.client = path, spec, client
        self.created_at = _now()
        self.started: list[str] = []  # cloud resources whose creation was requested
        self.step = "recording the launch"

    def write(self, *, host: str | None = None, state: LaunchState = "launching") -> None:
        connection = self.connection(host=host, state=state)
        write_atomically(self.path, connection.to_json(), private=True)

    def connection(self, *, host: str | None, state: LaunchState) -> ConnectionFile:
        return connection_for(
            self.spec,
            self.client,
            target="gce",
            host=host,
            created_at=self.created_at,
            state=state,
        )

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def interrupted(self) -> str:
        """The one line an interrupt prints at this point of the launch."""
        name = self.spec.instance
        if not self.started:
            self.remove()
            return f"interrupted while {self.step}: nothing was created; removed the launch record"
        left = ", ".join(self.started)
        return (
            f"interrupted while {self.step}: nothing was rolled back; left (if gcloud got "
            f"that far): {left}, recorded in {self.path}; delete them with "
            f"`invoke teardown --instance {name}`"
        )


def _resources(spec: LaunchSpec) -> dict[str, str]:
    """What this launch creates, by its API path -> how it is named to the user."""
    named = {
        commands.firewall_resource(spec.project, rule): f"firewall rule {rule}"
        for rule in spec.rule_names
    }
    instance = commands.instance_resource(spec.project, spec.zone, spec.instance)
    return {**named, instance: f"instance {spec.instance} ({spec.zone})"}


def _group_resources(spec: LaunchSpec) -> list[str]:
    """How the worker template and group are named to the user (after an interrupt)."""
    assert spec.workers is not None
    return [
        f"instance template {spec.workers.template}",
        f"worker group {spec.workers.group} ({spec.zone})",
    ]


def _explain_create_failure(spec: LaunchSpec, error: GcloudError) -> GcloudError:
    if not isinstance(error, GcloudCommandError):
        return error
    detail = error.detail
    instance = commands.instance_resource(spec.project, spec.zone, spec.instance)
    if error.exists(instance):
        return GcloudError(
            f"instance {spec.instance} already exists in {spec.zone}: another launch of it "
            f"is under way or left it; tear it down (`invoke teardown --instance "
            f"{spec.instance}`) or pass another --instance"
        )
    for rule in spec.rule_names:
        if error.exists(commands.firewall_resource(spec.project, rule)):
            return GcloudError(
                f"firewall rule {rule} already exists: another launch of {spec.instance} is "
                "under way or left it behind (a race between two launches, not a missing "
                f"permission); `invoke teardown --instance {spec.instance}` deletes it"
            )
    placement = _explain_placement(spec, error, spec.machine_type)
    if placement is not None:
        return placement
    if "firewall" in " ".join(error.argv[:3]):
        return GcloudError(
            f"firewall rule could not be created ({detail}): you need "
            f"compute.firewalls.create in {spec.project}, or ask an owner to allow the ports"
        )
    return GcloudError(f"creating instance {spec.instance} failed: {detail}")


def _explain_placement(
    spec: LaunchSpec, error: GcloudCommandError, machine_type: str
) -> GcloudError | None:
    """A zone that does not exist, or a machine type it does not offer; else None."""
    detail = error.detail
    if f"zones/{spec.zone}'" in detail and "not found" in detail:
        return GcloudError(
            f"zone {spec.zone} does not exist: pick one from `gcloud compute zones list`"
        )
    if "machineType" in detail or "machine type" in detail.lower():
        return GcloudError(
            f"machine type {machine_type} is not available in {spec.zone}: pick one from "
            f"`gcloud compute machine-types list --zones {spec.zone}` ({detail})"
        )
    return None


def _machine_types(spec: LaunchSpec) -> list[str]:
    """The machine types the launch starts: the scheduler VM's, then the worker VMs'."""
    types = [spec.machine_type]
    if spec.workers is not None and spec.workers.machine_type not in types:
        types.append(spec.workers.machine_type)
    return types


def check_machines(spec: LaunchSpec, settings: LaunchSettings, echo: Progress) -> None:
    """The entrypoint's sizing plan on each machine type the launch starts, from the CPUs
    and memory in the catalogue gcloud reads, before anything is created: a VM that
    refuses its settings at boot would otherwise bill until the timeout."""
    types = _machine_types(spec)
    argvs = [commands.machine_type_describe(spec.project, spec.zone, name) for name in types]
    env = dict(entrypoint_env(settings))
    for name, argv, result in zip(types, argvs, run_gcloud_all(argvs, echo), strict=True):
        if isinstance(result, GcloudCommandError):
            raise _explain_placement(spec, result, name) or result
        if isinstance(result, GcloudError):
            raise result
        found = parse_json(argv, result) or {}
        if "guestCpus" in found and "memoryMb" in found:  # else the VM's entrypoint decides
            check_machine_fits(env, name, float(found["guestCpus"]), int(found["memoryMb"]))


@contextmanager
def _user_data_file(spec: LaunchSpec) -> Iterator[str]:
    """The user-data (public: certificates, a script, a unit) in a file for gcloud."""
    with tempfile.TemporaryDirectory(prefix="daskbox-user-data-") as folder:
        path = Path(folder, "user-data.yaml")
        path.write_text(render_user_data(spec), encoding="utf-8")
        yield str(path)


def _create(spec: LaunchSpec, record: LaunchRecord, echo: Progress) -> dict[str, Any]:
    """Create the rules and the instance side by side; undo the half that worked if the
    other failed, so a failure leaves nothing."""
    resources = _resources(spec)
    record.step = "creating the firewall rules and the instance"
    with _user_data_file(spec) as user_data:
        argvs = [commands.firewall_create(spec, rule) for rule in spec.firewall_rules]
        if spec.workers is not None:
            argvs.append(commands.firewall_internal_create(spec))
        argvs.append(commands.instance_create(spec, user_data))
        record.started = list(resources.values())
        results = run_gcloud_all(argvs, echo)
    failures = [result for result in results if isinstance(result, GcloudError)]
    if not failures:
        created = parse_json(argvs[-1], str(results[-1]))
        return dict(created[0] if isinstance(created, list) else created)
    record.step = "undoing the half-made launch"
    made = [
        (argv, result)
        for argv, result in zip(argvs, results, strict=True)
        if not isinstance(result, GcloudError)
    ]
    undo = []
    for argv, _ in made:
        if argv[2] == "instances":
            undo.append(commands.instance_delete(spec.project, spec.zone, spec.instance))
        else:
            undo.append(commands.firewall_delete(spec.project, (argv[4],)))
    leftovers = [r for r in run_gcloud_all(undo, echo) if isinstance(r, GcloudError)]
    if leftovers:
        raise GcloudError(
            f"{_explain_create_failure(spec, failures[0])}; undoing it also failed "
            f"({leftovers[0]}): run `invoke teardown --instance {spec.instance}`"
        )
    record.remove()
    record.started = []
    raise _explain_create_failure(spec, failures[0])


def _internal_ip(instance: dict[str, Any] | None) -> str | None:
    for interface in (instance or {}).get("networkInterfaces", []):
        if interface.get("networkIP"):
            return str(interface["networkIP"])
    return None


@contextmanager
def _worker_user_data_file(spec: LaunchSpec, cluster_ca: str, scheduler_ip: str) -> Iterator[str]:
    """The worker VMs' user-data (public: the two CA certificates, the unit) for gcloud."""
    with tempfile.TemporaryDirectory(prefix="daskbox-user-data-") as folder:
        path = Path(folder, "worker-user-data.yaml")
        path.write_text(render_worker_user_data(spec, cluster_ca, scheduler_ip), encoding="utf-8")
        yield str(path)


def _undo_launch(spec: LaunchSpec, record: LaunchRecord, failed: str, echo: Progress) -> None:
    """Delete everything the launch made and its record (teardown by record); when that
    fails too, say both and how to finish it."""
    record.step = "undoing the half-made launch"
    try:
        teardown_gce(target_for(record.path, spec), dry_run=False, echo=echo)
    except GcloudError as undo:
        raise GcloudError(
            f"{failed}; undoing it also failed ({undo}): run `invoke teardown --instance "
            f"{spec.instance}`"
        ) from None
    record.started = []


def _create_workers(
    spec: LaunchSpec, record: LaunchRecord, cluster_ca: str, scheduler_ip: str, echo: Progress
) -> None:
    """The worker VMs' template (now that the cluster CA is pinned and the scheduler's
    internal address known), then their group. A failure deletes everything the launch
    made and its record (teardown by record), then says why."""
    record.step = "creating the worker VMs' template and group"
    record.started += _group_resources(spec)
    with _worker_user_data_file(spec, cluster_ca, scheduler_ip) as user_data:
        try:
            run_gcloud(commands.template_create(spec, user_data), echo)
            run_gcloud(commands.group_create(spec), echo)
        except GcloudError as error:
            _undo_launch(spec, record, f"creating the worker VMs failed ({error})", echo)
            raise GcloudError(
                f"creating the worker VMs failed, so the launch was undone: {error}"
            ) from None


def _external_ip(instance: dict[str, Any] | None) -> str | None:
    for interface in (instance or {}).get("networkInterfaces", []):
        for access in interface.get("accessConfigs", []):
            if access.get("natIP"):
                return str(access["natIP"])
    return None


class _BootWatch:
    """Poll the VM's guest attributes for its cluster CA (and its boot's failure) and,
    while the instance shows no external IP yet, its description, side by side (one gcloud
    start costs a second)."""

    def __init__(self, spec: LaunchSpec, created: dict[str, Any], echo: Progress) -> None:
        self.spec, self.echo = spec, echo
        self.ip = _external_ip(created)
        self.cluster_ca: str | None = None
        self.polls = 0

    def attempt(self) -> tuple[str, str] | None:
        spec = self.spec
        argvs = []
        if self.cluster_ca is None:
            argvs.append(commands.boot_attributes(spec.project, spec.zone, spec.instance))
        if self.ip is None:
            argvs.append(commands.instance_describe(spec.project, spec.zone, spec.instance))
        # Each command is printed the first time it runs; later polls only report progress.
        results = run_gcloud_all(argvs, self.echo if self.polls == 0 else None)
        self.polls += 1
        for argv, result in zip(argvs, results, strict=True):
            if argv[3] == "get-guest-attributes":
                attributes = published(argv, result)
                failure = boot_failure(spec.instance, spec.image.reference, attributes)
                if failure is not None:
                    raise failure
                ca = attributes.get(contract.GUEST_ATTRIBUTE_CLUSTER_CA, "")
                self.cluster_ca = ca if ca.strip() else None
            elif isinstance(result, GcloudError):
                raise result
            else:
                self.ip = _external_ip(parse_json(argv, result))
        if self.cluster_ca is None or self.ip is None:
            return None
        return self.cluster_ca, self.ip


def _stuck(spec: LaunchSpec, what: str, timeout: float) -> GcloudError:
    serial = shlex.join(commands.serial_port_output(spec.project, spec.zone, spec.instance))
    return GcloudError(
        f"{what} within {timeout:.0f} s: look at `{serial}`; the VM is still running, "
        f"delete it with `invoke teardown --instance {spec.instance}`"
    )


def launch_gce(
    project_root: Path,
    settings: LaunchSettings,
    spec: LaunchSpec,
    tls: LaunchTLS,
    *,
    echo: Progress = print,
) -> ConnectionFile:
    """Run the launch transaction (see the module docstring); return the ready connection."""
    path = connection_path(project_root, spec.instance)
    if path.exists():
        raise GcloudError(
            f"{spec.instance} is already launched, or was half-launched (recorded in {path}): "
            f"run `invoke teardown --instance {spec.instance}` first"
        )
    require_gcloud()  # before the record: a launch that cannot start leaves nothing
    check_machines(spec, settings, echo)
    record = LaunchRecord(path, spec, tls.client)
    try:
        record.write()
        instance = _create(spec, record, echo)
        deadline = _Deadline(settings.timeout)
        record.step = "waiting for the VM to publish its cluster CA"
        echo(f"waiting for {spec.instance} to boot and publish its cluster CA")
        watch = _BootWatch(spec, instance, echo)
        # Polls at most 3 s apart: a failed pull or refused settings is told within seconds.
        booted = poll(
            watch.attempt,
            timeout=deadline.left(),
            waiting_for="the cluster CA and the external IP",
            echo=echo,
            first=1.0,
            longest=3.0,
        )
        if booted is None:
            what = (
                "the VM did not publish its cluster CA"
                if watch.cluster_ca is None
                else f"instance {spec.instance} got no external IP"
            )
            raise _stuck(spec, what, settings.timeout)
        cluster_ca, ip = booted
        record.client = pin_cluster_ca(tls.client, cluster_ca)
        record.write(host=ip)
        with BootWatcher(spec.project, spec.zone, spec.instance, spec.image.reference) as vms:
            hosts = 1
            if spec.workers is not None:
                scheduler_ip = _internal_ip(instance) or _internal_ip(
                    run_gcloud_json(
                        commands.instance_describe(spec.project, spec.zone, spec.instance), echo
                    )
                )
                if scheduler_ip is None:
                    no_ip = f"instance {spec.instance} got no internal IP"
                    raise _stuck(spec, no_ip, settings.timeout)
                # The pinned PEM, as the client trusts it: what the worker VMs trust too.
                _create_workers(spec, record, record.client.ca_pem, scheduler_ip, echo)
                vms.group = spec.workers.group
                hosts += spec.workers.size
            record.step = "waiting for the scheduler"
            connection = record.connection(host=ip, state="ready")
            if (
                wait_for_scheduler(
                    connection.scheduler_address,
                    record.client,
                    deadline.left(),
                    echo,
                    give_up=give_up_on(vms),
                    hosts=hosts,
                )
                is None
            ):
                what = (
                    "the scheduler" if hosts == 1 else f"the scheduler with workers on {hosts} VMs"
                )
                raise _stuck(
                    spec,
                    f"{what} at {connection.scheduler_address} did not answer",
                    settings.timeout,
                )
        record.write(host=ip, state="ready")
    except KeyboardInterrupt:
        raise Interrupted(record.interrupted()) from None
    except BootFailed as failure:
        raise _failed_boot(spec, record, failure, keep=settings.keep_failed, echo=echo) from None
    except Exception:  # daskbox's own errors and bugs alike
        if not record.started:  # failed before asking for anything: no half-made record
            record.remove()
        raise
    echo(f"connection file: {path}")
    return connection


def _failed_boot(
    spec: LaunchSpec, record: LaunchRecord, failure: BootFailed, *, keep: bool, echo: Progress
) -> GcloudError:
    """A VM reported a final failure: delete what the launch made (teardown by its
    record), unless ``keep``; the error says which, and how to delete what is kept."""
    if keep:
        serial = shlex.join(commands.serial_port_output(spec.project, spec.zone, spec.instance))
        return BootFailed(
            f"{failure}; kept for inspection (--keep-failed): look at `{serial}`, delete it "
            f"with `invoke teardown --instance {spec.instance}`"
        )
    echo(f"{failure}: deleting what the launch made")
    _undo_launch(spec, record, str(failure), echo)
    return BootFailed(f"{failure} (the launch deleted what it made; --keep-failed keeps it)")


class _Deadline:
    """One timeout shared by every wait of a launch."""

    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self._end - time.monotonic())


_ELIDED_CA = "<this launch's client CA certificate (public)>\n"
_ELIDED_CLUSTER_CA = "<the cluster CA certificate the scheduler VM publishes (public)>\n"
_SCHEDULER_IP = "SCHEDULER_INTERNAL_IP"


def print_plan(spec: LaunchSpec, echo: Progress = print) -> None:
    """What ``--dry-run`` shows: every command in order and the user-data."""
    for name in _machine_types(spec):
        echo(
            f"$ {shlex.join(commands.machine_type_describe(spec.project, spec.zone, name))}"
            "  # the sizing plan is checked against its CPUs and memory"
        )
    for rule in spec.firewall_rules:
        echo(f"$ {shlex.join(commands.firewall_create(spec, rule))}")
    if spec.workers is not None:
        echo(f"$ {shlex.join(commands.firewall_internal_create(spec))}")
    echo(f"$ {shlex.join(commands.instance_create(spec))}")
    echo(
        f"$ {shlex.join(commands.boot_attributes(spec.project, spec.zone, spec.instance))}"
        "  # polled until the VM publishes its cluster CA, or its boot fails"
    )
    public = dataclasses.replace(spec, client_ca_pem=_ELIDED_CA)
    if spec.workers is not None:
        echo(f"$ {shlex.join(commands.template_create(spec))}")
        echo(f"$ {shlex.join(commands.group_create(spec))}")
    echo(f"{commands.USER_DATA_PLACEHOLDER}:")
    echo(render_user_data(public).rstrip())
    if spec.workers is not None:
        echo(f"{commands.USER_DATA_PLACEHOLDER} of the worker VMs' template:")
        echo(render_worker_user_data(public, _ELIDED_CLUSTER_CA, _SCHEDULER_IP).rstrip())


__all__ = ["detect_public_ip", "gcloud_project", "launch_gce", "plan_launch", "print_plan"]
