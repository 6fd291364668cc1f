"""Launch on Compute Engine: ensure the firewall rule, create the VM, wait, write the file.

The only module (with ``local``/``teardown``) that acts. Whatever this launch created is
deleted again when a later step fails, except a VM that was created but never answered:
it is left for inspection (serial port output) and the error says how to tear it down.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daskbox._tasks import Progress
from daskbox.client.connection import ConnectionFile, connection_path, write_connection_file
from daskbox.errors import GcloudError
from daskbox.gcloud import commands
from daskbox.gcloud._gcloud import GcloudCommandError, run_gcloud_json
from daskbox.gcloud.cloud_init import render_user_data
from daskbox.gcloud.container_declaration import DEPRECATION_WARNING
from daskbox.gcloud.ready import wait_for_scheduler
from daskbox.gcloud.settings import LaunchSettings
from daskbox.gcloud.spec import (
    LaunchImage,
    LaunchSpec,
    build_spec,
    connection_for,
    source_ranges,
)
from daskbox.gcloud.tls import ServerTLS, TLSMaterial

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
    """``project``, or gcloud's configured one, after checking gcloud is installed and
    authenticated (one ``gcloud config list`` call: gcloud starts slowly)."""
    config: dict[str, Any] = run_gcloud_json(commands.config_list(), echo) or {}
    core, auth = config.get("core", {}), config.get("auth", {})
    credentials_disabled = str(auth.get("disable_credentials", "")).lower() in {"true", "1"}
    if not core.get("account") and not credentials_disabled:
        raise GcloudError("gcloud is not authenticated: run `gcloud auth login`")
    chosen = project or core.get("project")
    if not chosen:
        raise GcloudError(
            "no Google Cloud project set: pass --project, set project in [tool.daskbox.gcloud], "
            "or run `gcloud config set project PROJECT`"
        )
    return str(chosen)


def plan_launch(
    settings: LaunchSettings,
    *,
    project: str,
    image: LaunchImage,
    tls: TLSMaterial,
    detect_ip: Callable[[], str | None] = detect_public_ip,
) -> LaunchSpec:
    """Decide everything (pure apart from IP detection, skipped when a range is given)."""
    detected = None if settings.source_range is not None else detect_ip()
    ranges = source_ranges(settings.source_range, detected, settings.allow_any_source)
    return build_spec(settings, project=project, image=image, server_tls=tls.server, ranges=ranges)


def _external_ip(instance: dict[str, Any]) -> str | None:
    for interface in instance.get("networkInterfaces", []):
        for access in interface.get("accessConfigs", []):
            if access.get("natIP"):
                return str(access["natIP"])
    return None


def _explain_create_failure(spec: LaunchSpec, error: GcloudCommandError) -> GcloudError:
    detail = error.detail
    if "already exists" in detail:
        return GcloudError(
            f"instance {spec.instance} already exists in {spec.zone}: tear it down "
            f"(`invoke teardown --instance {spec.instance}`) or pass another --instance"
        )
    if f"zones/{spec.zone}'" in detail and "not found" in detail:
        return GcloudError(
            f"zone {spec.zone} does not exist: pick one from `gcloud compute zones list`"
        )
    if "machineType" in detail or "machineTypes" in detail:
        return GcloudError(
            f"machine type {spec.machine_type} is not available in {spec.zone}: pick one from "
            f"`gcloud compute machine-types list --zones {spec.zone}` ({detail})"
        )
    return GcloudError(f"creating instance {spec.instance} failed: {detail}")


class _Firewall:
    """Ensure the shared rule admits this caller; remember whether we created it."""

    def __init__(self, spec: LaunchSpec, echo: Progress) -> None:
        self.spec, self.echo = spec, echo
        self.created = False
        self.previous_ranges: tuple[str, ...] | None = None  # set when we widened the rule

    def ensure(self) -> None:
        spec = self.spec
        try:
            rule = run_gcloud_json(
                commands.firewall_describe(spec.project, spec.firewall_rule), self.echo
            )
        except GcloudCommandError as error:
            if not error.missing(commands.firewall_resource(spec.project, spec.firewall_rule)):
                raise
            rule = None
        try:
            if rule is None:
                run_gcloud_json(commands.firewall_create(spec), self.echo)
                self.created = True
                return
            current = tuple(rule.get("sourceRanges", []))
            missing = [item for item in spec.source_ranges if item not in current]
            if missing:
                run_gcloud_json(commands.firewall_update(spec, (*current, *missing)), self.echo)
                self.previous_ranges = current
        except GcloudCommandError as error:
            raise GcloudError(
                f"firewall rule {spec.firewall_rule} could not be created or updated "
                f"({error.detail}): you need compute.firewalls.create/update in {spec.project}, "
                "or ask an owner to create the rule"
            ) from None

    def roll_back(self) -> None:
        """Undo what ``ensure`` changed; a failure here is reported, not raised, so the
        error that caused the rollback stays the one the user sees."""
        spec = self.spec
        try:
            if self.created:
                self.echo(f"rolling back: deleting firewall rule {spec.firewall_rule}")
                run_gcloud_json(
                    commands.firewall_delete(spec.project, spec.firewall_rule), self.echo
                )
            elif self.previous_ranges is not None:
                self.echo(f"rolling back: restoring the source ranges of {spec.firewall_rule}")
                run_gcloud_json(commands.firewall_update(spec, self.previous_ranges), self.echo)
        except GcloudError as error:
            self.echo(f"warning: could not roll back firewall rule {spec.firewall_rule}: {error}")


def _create_instance(spec: LaunchSpec, echo: Progress) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="daskbox-user-data-") as folder:
        path = Path(folder, "user-data.yaml")
        # The user-data holds the server's private key: readable by the owner only.
        path.touch(mode=0o600)
        path.write_text(render_user_data(spec), encoding="utf-8")
        try:
            created = run_gcloud_json(commands.instance_create(spec, str(path)), echo)
        except GcloudCommandError as error:
            raise _explain_create_failure(spec, error) from None
    return dict(created[0] if isinstance(created, list) else created)


IP_POLL_SECONDS = 3.0


def _wait_for_ip(spec: LaunchSpec, instance: dict[str, Any], echo: Progress, timeout: float) -> str:
    """The instance's external IP, polling ``instances describe`` until it has one.

    The describe command is printed once; later polls only report progress.
    """
    describe = commands.instance_describe(spec.project, spec.zone, spec.instance)
    start = time.monotonic()
    polls = 0
    while (ip := _external_ip(instance)) is None:
        elapsed = time.monotonic() - start
        if elapsed > timeout:
            raise GcloudError(
                f"instance {spec.instance} got no external IP within {timeout:.0f} s: "
                f"check it in the console, then run `invoke teardown --instance {spec.instance}` "
                "(it deletes the VM and the firewall rule)"
            )
        if polls:
            echo(f"  ... no external IP yet after {elapsed:.0f} s")
        time.sleep(IP_POLL_SECONDS)
        instance = run_gcloud_json(describe, echo if polls == 0 else None)
        polls += 1
    return ip


_ELIDED_TLS = ServerTLS(
    ca_pem="<this launch's CA certificate>\n",
    cert_pem="<this launch's server certificate>\n",
    key_pem="<this launch's server key>\n",
)


def print_plan(spec: LaunchSpec, echo: Progress = print) -> None:
    """What ``--dry-run`` shows: every command in order and the user-data (TLS elided)."""
    echo(f"$ {shlex.join(commands.firewall_describe(spec.project, spec.firewall_rule))}")
    echo(f"$ {shlex.join(commands.firewall_create(spec))}  # only when the rule is missing")
    echo(f"$ {shlex.join(commands.instance_create(spec))}")
    echo(f"{commands.USER_DATA_PLACEHOLDER}:")
    echo(render_user_data(dataclasses.replace(spec, server_tls=_ELIDED_TLS)).rstrip())


def launch_gce(
    project_root: Path,
    settings: LaunchSettings,
    spec: LaunchSpec,
    tls: TLSMaterial,
    *,
    echo: Progress = print,
) -> ConnectionFile:
    """Create the firewall rule (if needed) and the VM, wait for it, write the connection file."""
    if spec.method == "container-declaration":
        echo(DEPRECATION_WARNING)
    firewall = _Firewall(spec, echo)
    firewall.ensure()
    try:
        instance = _create_instance(spec, echo)
    except BaseException:
        firewall.roll_back()
        raise
    path = connection_path(project_root, spec.instance)
    created_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

    def record(host: str | None) -> ConnectionFile:
        connection = connection_for(
            spec, tls.client, target="gce", host=host, created_at=created_at
        )
        write_connection_file(path, connection)
        return connection

    # Written as soon as the VM exists (and again once it has an address), so that
    # `invoke teardown` finds the VM and the rule whatever fails from here on.
    record(None)
    ip = _wait_for_ip(spec, instance, echo, settings.timeout)
    connection = record(ip)
    address = connection.scheduler_address
    if wait_for_scheduler(address, tls.client, settings.timeout, echo) is None:
        serial = shlex.join(commands.serial_port_output(spec.project, spec.zone, spec.instance))
        raise GcloudError(
            f"the scheduler at {address} did not answer within {settings.timeout:.0f} s: "
            f"look at `{serial}`; the VM is still running, delete it with `invoke teardown`"
        )
    echo(f"connection file: {path}")
    return connection
