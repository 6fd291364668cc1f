"""Tear a launched cluster down: the VM (or local container), the shared firewall rule
when no other daskbox instance needs it, the connection file. Idempotent."""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from daskbox._tasks import Progress
from daskbox.client.connection import (
    ConnectionFile,
    connection_dir,
    connection_path,
    read_connection_file,
)
from daskbox.errors import DaskboxError, GcloudError
from daskbox.gcloud import commands
from daskbox.gcloud._gcloud import GcloudCommandError, run_gcloud_json
from daskbox.gcloud.local import container_state, remove_container, tls_dir


class NothingToTearDown(DaskboxError):
    """An explicitly named instance does not exist."""


@dataclass(frozen=True)
class TeardownTarget:
    """One cluster to delete, from its connection file or from flags."""

    instance: str
    local: bool
    project: str | None = None
    zone: str | None = None
    firewall_rule: str | None = None
    network_tag: str | None = None
    connection: Path | None = None


def _from_file(path: Path) -> TeardownTarget:
    connection: ConnectionFile = read_connection_file(path)
    return TeardownTarget(
        instance=connection.instance,
        local=connection.target == "local",
        project=connection.project,
        zone=connection.zone,
        firewall_rule=connection.firewall_rule,
        network_tag=connection.extra.get("network_tag"),
        connection=path,
    )


def find_targets(project_root: Path, instance: str | None, local: bool) -> list[TeardownTarget]:
    """The connection files matching the request (``local`` picks local ones only)."""
    if instance is not None:
        path = connection_path(project_root, instance)
        return [_from_file(path)] if path.is_file() else []
    found = [_from_file(path) for path in sorted(connection_dir(project_root).glob("*.json"))]
    return [target for target in found if target.local == local]


def teardown_local(
    project_root: Path, target: TeardownTarget, *, dry_run: bool, echo: Progress
) -> None:
    """Remove the container, its TLS folder and its connection file."""
    if dry_run:
        echo(
            f"would remove container {target.instance} and {tls_dir(project_root, target.instance)}"
        )
        return
    if not remove_container(target.instance, echo):
        echo(f"container {target.instance} was already gone")
    shutil.rmtree(tls_dir(project_root, target.instance), ignore_errors=True)
    if target.connection is not None:
        target.connection.unlink(missing_ok=True)


def _rule_still_used(project: str, network_tag: str | None, deleted: str, echo: Progress) -> bool:
    instances = run_gcloud_json(commands.instance_list(project), echo) or []
    for instance in instances:
        tags = instance.get("tags", {}).get("items", [])
        if instance.get("name") != deleted and (network_tag is None or network_tag in tags):
            return True
    return False


def teardown_gce(target: TeardownTarget, *, dry_run: bool, echo: Progress) -> None:
    """Delete the VM (gone already is fine when a connection file named it), then the rule."""
    if target.project is None or target.zone is None:
        raise GcloudError(f"no project/zone known for {target.instance}: pass --project and --zone")
    delete = commands.instance_delete(target.project, target.zone, target.instance)
    if dry_run:
        echo("$ " + shlex.join(delete))
        if target.firewall_rule:
            echo("$ " + shlex.join(commands.firewall_delete(target.project, target.firewall_rule)))
        return
    try:
        run_gcloud_json(delete, echo)
    except GcloudCommandError as error:
        # Only the instance's own path counts as "gone": a missing zone or project is an
        # error, not a reason to forget the VM and delete its connection file.
        if not error.missing(
            commands.instance_resource(target.project, target.zone, target.instance)
        ):
            raise
        if target.connection is None:
            raise NothingToTearDown(
                f"instance {target.instance} not found in {target.zone} of {target.project}: "
                "`invoke status` lists daskbox instances"
            ) from None
        echo(f"instance {target.instance} was already deleted")
    rule = target.firewall_rule
    if rule and not _rule_still_used(target.project, target.network_tag, target.instance, echo):
        try:
            run_gcloud_json(commands.firewall_delete(target.project, rule), echo)
        except GcloudCommandError as error:
            if not error.missing(commands.firewall_resource(target.project, rule)):
                raise
    elif rule:
        echo(f"keeping firewall rule {rule}: another daskbox instance uses it")
    if target.connection is not None:
        target.connection.unlink(missing_ok=True)


def teardown(
    project_root: Path,
    *,
    instance: str | None,
    local: bool,
    fallback: Callable[[], TeardownTarget] | None,
    dry_run: bool = False,
    echo: Progress = print,
) -> int:
    """Tear down what the connection files (or ``fallback()`` for a named instance) point at.

    ``fallback`` is called only when the named instance has no connection file: building
    it may ask gcloud for its configured project, which the file makes unnecessary.
    Returns how many clusters were torn down; 0 means there was nothing to delete.
    """
    targets = find_targets(project_root, instance, local)
    if not targets and instance is not None and fallback is not None:
        named = fallback()
        if named.local and container_state(named.instance) is None:
            raise NothingToTearDown(f"no local cluster named {named.instance}")
        targets = [named]
    if not targets:
        where = "local clusters" if local else "Compute Engine clusters"
        echo(f"nothing to delete: no {where} launched from {project_root}")
        return 0
    for target in targets:
        if target.local:
            teardown_local(project_root, target, dry_run=dry_run, echo=echo)
        else:
            teardown_gce(target, dry_run=dry_run, echo=echo)
        echo(f"deleted {target.instance}" if not dry_run else "(dry run: nothing deleted)")
    return len(targets)
