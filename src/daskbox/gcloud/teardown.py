"""Tear a launched cluster down: exactly what its launch made. Idempotent.

A launch records itself (the connection file) before it creates anything, and labels its
instance with the project, so teardown finds its resources three ways:

1. the connection files (any state: a launch interrupted halfway is recorded too);
2. ``--instance NAME`` without a file: that instance and the rules its name implies;
3. no usable file at all (deleted, or corrupt: a corrupt file is set aside as
   ``NAME.json.corrupt-<time>`` and reported, never a dead end): the instances labelled
   with this project and the rules whose description names it (two gcloud calls).

Resources that are already gone (the VM deleted itself at its maximum run duration, an
interrupted launch never got that far) count as deleted, but only when the API names the
resource itself as not found: a missing zone or project is an error, and the record stays.
"""

from __future__ import annotations

import datetime
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from daskbox._tasks import Progress
from daskbox.client.connection import ConnectionFile, connection_dir, connection_path
from daskbox.errors import ConnectionFileError, DaskboxError, GcloudError
from daskbox.gcloud import commands
from daskbox.gcloud._gcloud import GcloudCommandError, parse_json, run_gcloud_all
from daskbox.gcloud.spec import firewall_rule_names


class NothingToTearDown(DaskboxError):
    """An explicitly named instance does not exist."""


@dataclass(frozen=True)
class TeardownTarget:
    """One cluster to delete: from its connection file, from flags, or found by label."""

    instance: str
    local: bool
    project: str | None = None
    zone: str | None = None  # None: no instance known to exist (only rules)
    firewall_rules: tuple[str, ...] = ()
    connection: Path | None = None


def _from_file(path: Path, connection: ConnectionFile) -> TeardownTarget:
    return TeardownTarget(
        instance=connection.instance,
        local=connection.target == "local",
        project=connection.project,
        zone=connection.zone,
        firewall_rules=connection.firewall_rules,
        connection=path,
    )


def set_aside(path: Path, echo: Progress) -> Path:
    """Move a corrupt connection file out of the way (kept for a look), and say so."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    path.replace(target)
    echo(f"set aside {path.name}, which is not a readable connection file, as {target.name}")
    return target


def read_targets(
    project_root: Path, instance: str | None, echo: Progress
) -> tuple[list[TeardownTarget], bool]:
    """Targets from the connection files (``instance``'s only, when named), and whether a
    corrupt file was set aside (then resources are also looked for by label)."""
    if instance is not None:
        paths = [connection_path(project_root, instance)]
    else:
        paths = sorted(connection_dir(project_root).glob("*.json"))
    targets, corrupt = [], False
    for path in paths:
        if not path.is_file():
            continue
        try:
            connection = ConnectionFile.from_json(path.read_text(encoding="utf-8"), str(path))
        except (ConnectionFileError, UnicodeDecodeError):
            set_aside(path, echo)
            corrupt = True
            continue
        targets.append(_from_file(path, connection))
    return targets, corrupt


def discover_gce(project: str, label: str, echo: Progress) -> list[TeardownTarget]:
    """This project's daskbox instances (by label) and firewall rules (by description)."""
    instances_argv = commands.instance_list(project, label)
    rules_argv = commands.firewall_list(project, label)
    found_instances, found_rules = run_gcloud_all([instances_argv, rules_argv], echo)
    for result in (found_instances, found_rules):
        if isinstance(result, GcloudError):
            raise result
    instances = parse_json(instances_argv, str(found_instances)) or []
    rules = {str(rule["name"]) for rule in parse_json(rules_argv, str(found_rules)) or []}
    targets = []
    for item in instances:
        name = str(item["name"])
        own = tuple(rule for rule in firewall_rule_names(name) if rule in rules)
        rules -= set(own)
        zone = str(item.get("zone", "")).rstrip("/").rsplit("/", 1)[-1]
        targets.append(TeardownTarget(name, False, project, zone, own))
    for rule in sorted(rules):  # rules whose instance is gone or was never created
        targets.append(TeardownTarget(rule.rsplit("-", 1)[0], False, project, None, (rule,)))
    return targets


def _deletions(target: TeardownTarget) -> list[tuple[list[str], str, str]]:
    """(argv, API path of what it deletes, how to name it) for each deletion."""
    assert target.project is not None
    steps = []
    if target.zone is not None:
        steps.append(
            (
                commands.instance_delete(target.project, target.zone, target.instance),
                commands.instance_resource(target.project, target.zone, target.instance),
                f"instance {target.instance}",
            )
        )
    for rule in target.firewall_rules:
        steps.append(
            (
                commands.firewall_delete(target.project, (rule,)),
                commands.firewall_resource(target.project, rule),
                f"firewall rule {rule}",
            )
        )
    return steps


def teardown_gce(target: TeardownTarget, *, dry_run: bool, echo: Progress) -> int:
    """Delete the instance and the rules side by side; return how many existed."""
    if target.project is None:
        raise GcloudError(f"no project known for {target.instance}: pass --project")
    steps = _deletions(target)
    if dry_run:
        for argv, _, _ in steps:
            echo("$ " + shlex.join(argv))
        return 0
    results = run_gcloud_all([argv for argv, _, _ in steps], echo)
    existed = 0
    for (_, resource, name), result in zip(steps, results, strict=True):
        if isinstance(result, GcloudCommandError) and result.missing(resource):
            echo(f"{name} was already gone")
        elif isinstance(result, GcloudError):
            raise result
        else:
            existed += 1
    if target.connection is not None:
        target.connection.unlink(missing_ok=True)
    return existed


def teardown_local(
    project_root: Path, target: TeardownTarget, *, dry_run: bool, echo: Progress
) -> int:
    """Remove the container, its TLS folder and its connection file."""
    from daskbox.gcloud.local import remove_container, tls_dir

    folder = tls_dir(project_root, target.instance)
    if dry_run:
        echo(f"would remove container {target.instance} and {folder}")
        return 0
    existed = remove_container(target.instance, echo)
    if not existed:
        echo(f"container {target.instance} was already gone")
    shutil.rmtree(folder, ignore_errors=True)
    if target.connection is not None:
        target.connection.unlink(missing_ok=True)
    return int(existed)


def teardown(
    project_root: Path,
    *,
    instance: str | None,
    local: bool,
    named: Callable[[], TeardownTarget] | None,
    discover: Callable[[], list[TeardownTarget]] | None,
    dry_run: bool = False,
    echo: Progress = print,
) -> int:
    """Tear down what the connection files point at, else ``named()`` (a named instance
    without a file), else what ``discover()`` finds by label. Returns how many clusters
    had something to delete; 0 means there was nothing."""
    targets, corrupt = read_targets(project_root, instance, echo)
    targets = [target for target in targets if target.local == local]
    by_name = not targets and instance is not None and named is not None
    if by_name and named is not None:
        targets = [named()]
    elif (corrupt or not targets) and instance is None and discover is not None:
        known = {target.instance for target in targets}
        targets += [found for found in discover() if found.instance not in known]
    deleted = 0
    for target in targets:
        if target.local:
            existed = teardown_local(project_root, target, dry_run=dry_run, echo=echo)
        else:
            existed = teardown_gce(target, dry_run=dry_run, echo=echo)
        if dry_run:
            echo("(dry run: nothing deleted)")
        elif existed or target.connection is not None:
            echo(f"deleted {target.instance}")
            deleted += 1
    if not dry_run and deleted == 0:
        if by_name:
            [target] = targets
            where = "" if local else f" in {target.zone} of {target.project}"
            kind = "local cluster" if local else "instance or firewall rule"
            raise NothingToTearDown(
                f"no {kind} named {instance}{where}: `invoke status` lists daskbox clusters"
            )
        where = "local clusters" if local else "Compute Engine clusters"
        echo(f"nothing to delete: no {where} launched from {project_root}")
    return deleted


__all__ = ["NothingToTearDown", "TeardownTarget", "discover_gce", "teardown"]
