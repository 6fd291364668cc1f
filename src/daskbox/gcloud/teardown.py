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
from daskbox.gcloud.spec import LaunchSpec, firewall_rule_names, owner_of, worker_group_names


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
    group: str | None = None  # the worker VMs' managed instance group (in ``zone``)
    template: str | None = None  # its instance template
    group_zone: str | None = None  # the group's zone when no instance is known

    @property
    def where_group(self) -> str | None:
        return self.zone or self.group_zone


def _from_file(path: Path, connection: ConnectionFile) -> TeardownTarget:
    group, template = connection.extra.get("worker_group"), connection.extra.get("worker_template")
    return TeardownTarget(
        instance=connection.instance,
        local=connection.target == "local",
        project=connection.project,
        zone=connection.zone,
        firewall_rules=connection.firewall_rules,
        connection=path,
        group=str(group) if group else None,
        template=str(template) if template else None,
    )


def target_for(path: Path, spec: LaunchSpec) -> TeardownTarget:
    """Everything a launch of ``spec`` makes, as teardown deletes it (launch's rollback)."""
    workers = spec.workers
    return TeardownTarget(
        instance=spec.instance,
        local=False,
        project=spec.project,
        zone=spec.zone,
        firewall_rules=spec.rule_names,
        connection=path,
        group=workers.group if workers else None,
        template=workers.template if workers else None,
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
    """This project's daskbox instances (by label), firewall rules, worker groups and
    templates (by description), in four calls side by side."""
    argvs = [
        commands.instance_list(project, label),
        commands.firewall_list(project, label),
        commands.group_list(project, label),
        commands.template_list(project, label),
    ]
    results = run_gcloud_all(argvs, echo)
    for result in results:
        if isinstance(result, GcloudError):
            raise result
    instances, rule_items, group_items, template_items = (
        parse_json(argv, str(result)) or [] for argv, result in zip(argvs, results, strict=True)
    )
    rules = {str(rule["name"]) for rule in rule_items}
    templates = {str(item["name"]) for item in template_items}
    groups = {
        owner_of(str(item.get("description", ""))): (str(item["name"]), _last(item.get("zone")))
        for item in group_items
    }
    # A group's VMs go with their group (deleted one by one, the group would recreate them).
    members = tuple(worker_group_names(owner).base_instance_name + "-" for owner in groups)
    targets = []
    for item in instances:
        name = str(item["name"])
        if name.startswith(members):
            continue
        own = tuple(rule for rule in firewall_rule_names(name) if rule in rules)
        rules -= set(own)
        found = groups.pop(name, None)
        named = worker_group_names(name).template
        template = named if named in templates else None
        templates.discard(named)
        targets.append(
            TeardownTarget(
                name,
                False,
                project,
                _last(item.get("zone")),
                own,
                group=found[0] if found else None,
                template=template,
            )
        )
    for owner, (group, zone) in groups.items():  # the scheduler VM is gone, its group is not
        own = tuple(rule for rule in firewall_rule_names(owner) if rule in rules)
        rules -= set(own)
        template = worker_group_names(owner).template
        templates.discard(template)
        targets.append(
            TeardownTarget(
                owner, False, project, None, own, group=group, template=template, group_zone=zone
            )
        )
    for template in sorted(templates):
        owner = template.removesuffix("-workers")
        targets.append(TeardownTarget(owner, False, project, None, template=template))
    for rule in sorted(rules):  # rules whose instance is gone or was never created
        targets.append(TeardownTarget(rule.rsplit("-", 1)[0], False, project, None, (rule,)))
    return targets


def _last(url: object) -> str:
    return str(url or "").rstrip("/").rsplit("/", 1)[-1]


def _deletions(target: TeardownTarget) -> list[tuple[list[str], str, str]]:
    """(argv, API path of what it deletes, how to name it) for each deletion that can run
    side by side: the group (with its VMs), the scheduler VM and the rules."""
    assert target.project is not None
    steps = []
    zone = target.where_group
    if target.group is not None and zone is not None:
        steps.append(
            (
                commands.group_delete(target.project, zone, target.group),
                commands.group_resource(target.project, zone, target.group),
                f"worker group {target.group} and its VMs",
            )
        )
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
    # The template goes last: the API refuses to delete one a group still uses.
    phases = [_deletions(target)]
    if target.template is not None:
        phases.append(
            [
                (
                    commands.template_delete(target.project, target.template),
                    commands.template_resource(target.project, target.template),
                    f"instance template {target.template}",
                )
            ]
        )
    if dry_run:
        for steps in phases:
            for argv, _, _ in steps:
                echo("$ " + shlex.join(argv))
        return 0
    existed = 0
    for steps in phases:
        results = run_gcloud_all([argv for argv, _, _ in steps], echo)
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
