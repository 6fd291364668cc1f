"""Local environment vs the cluster's: the Python, every distribution, the lock, per platform.

Pure functions over plain reports (``daskbox.entrypoint.environment.environment_report``)
and what the lock gives each platform, so the whole comparison is testable without a
cluster. ``connect.py`` gathers the reports and decides whether to raise or warn.

The lock is the reference for both sides: the image record (``daskbox.record``) holds every
line of its export with the markers, evaluated once for the local platform and once for the
image's. For each cluster process, a difference is:

- Python implementation or full version differ;
- the image's lock hash is not the sha256 of the local poetry.lock;
- a distribution the lock gives both platforms at one version has another version (or is
  missing) on one side;
- a distribution the lock gives both platforms at different versions (markers pinning it
  per platform) does not have its own platform's locked version on one side;
- a distribution locked for the image's platform, installed locally, missing on the cluster;
- any difference at all in the serialization set (cloudpickle, msgpack, dask, distributed,
  tornado, toolz): tasks and results cross between the two sides through them, whatever
  the lock says.

Expected, listed but not failures: the OS and CPU themselves; distributions the lock gives
one platform only, or at another version per platform (``PlatformDifference``); and local
distributions outside the image's groups (dev group, daskbox, Jupyter: *local-only*).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

__all__ = [
    "SERIALIZATION",
    "CheckResult",
    "Comparison",
    "Difference",
    "EnvironmentReport",
    "LocalEnvironment",
    "LockedSides",
    "PlatformDifference",
    "check_reports",
    "compare",
]

SCHEDULER = "scheduler"
REBUILD_FIX = "fix: run `invoke build push`, then relaunch (`invoke teardown`, `invoke launch`)"
# Whatever the lock says per platform, these must be equal on both sides: the client and
# the cluster pickle tasks and results with them and speak distributed's protocol.
SERIALIZATION = frozenset({"cloudpickle", "msgpack", "dask", "distributed", "tornado", "toolz"})

Kind = Literal["python", "lock", "package"]
_KIND_ORDER: dict[Kind, int] = {"python": 0, "lock": 1, "package": 2}


@dataclass(frozen=True)
class EnvironmentReport:
    """One interpreter's environment, with distribution names canonicalized."""

    python: str  # full version, e.g. "3.11.7"
    implementation: str  # e.g. "CPython"
    platform: str  # e.g. "Linux-x86_64"
    distributions: Mapping[str, str]
    lock_hash: str | None = None
    node: str = ""  # the machine (VM) the process runs on, when the image was told

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnvironmentReport:
        """Read ``environment_report()``'s dict (which cannot use ``packaging`` remotely)."""
        return cls(
            python=str(data["python"]),
            implementation=str(data.get("implementation", "CPython")),
            platform=str(data["platform"]),
            distributions={
                canonicalize_name(name): str(version)
                for name, version in data["distributions"].items()
            },
            lock_hash=data.get("lock_hash") or None,
            node=str(data.get("node") or ""),
        )


@dataclass(frozen=True)
class LockedSides:
    """What the lock gives each side: name -> locked version (None for a direct reference
    whose version only its wheel knows), for the local platform and for the image's."""

    local: Mapping[str, str | None]
    image: Mapping[str, str | None]


@dataclass(frozen=True)
class LocalEnvironment:
    """This side of the comparison: the running interpreter plus what the lock says.

    ``locked`` is None when the image has no record of its lock (an explicit ``--image``;
    ``note`` says so): then the cluster's distributions are checked against local ones,
    and no difference can be told to be a platform's.
    """

    report: EnvironmentReport
    groups: tuple[str, ...]
    extras: tuple[str, ...] = ()
    lock_hash: str | None = None
    locked: LockedSides | None = None
    note: str | None = None


@dataclass(frozen=True)
class Difference:
    """One row of the mismatch table; None means missing on that side."""

    kind: Kind
    subject: str  # "python", "poetry.lock" or a distribution name
    local: str | None
    remote: str | None


@dataclass(frozen=True)
class PlatformDifference:
    """An expected difference: the lock gives this distribution one platform only, or each
    platform its own version, and each side has what the lock gives it."""

    name: str
    local: str | None
    remote: str | None

    def __str__(self) -> str:
        if self.remote is None:
            return f"{self.name} here only"
        if self.local is None:
            return f"{self.name} there only"
        return f"{self.name} {self.local} here / {self.remote} there"


@dataclass(frozen=True)
class Comparison:
    """The local environment against one cluster process."""

    where: str  # "scheduler" or a worker address
    differences: tuple[Difference, ...]
    matched: int  # distributions on the cluster with the same version locally
    local_only: tuple[str, ...]  # expected: local distributions outside the image groups
    platform_only: tuple[PlatformDifference, ...] = ()  # expected: the lock says so
    platforms: tuple[str, str] | None = None  # (local, cluster) when the OS or CPU differ
    # Serialization-set distributions the lock itself gives each platform another version of.
    split_by_lock: tuple[str, ...] = ()
    node: str = ""  # the VM the process runs on ("" when unknown)
    # Only the local side left the lock: same Python and lock hash, and every differing
    # package on the cluster at the version the lock gives the image.
    local_drift: bool = False


def _same_version(local: str | None, remote: str | None) -> bool:
    if local is None or remote is None:
        return local is remote
    try:
        return Version(local) == Version(remote)
    except InvalidVersion:
        return local == remote


def _is_locked_version(installed: str | None, locked: str | None) -> bool:
    """``installed`` is what the lock gives (a direct reference's None matches anything)."""
    return installed is not None and (locked is None or _same_version(installed, locked))


def _platform_difference(
    name: str, local: str | None, remote: str | None, sides: LockedSides
) -> PlatformDifference | None:
    """The difference between ``local`` and ``remote`` if the lock explains it, else None."""
    if name in SERIALIZATION or (name not in sides.local and name not in sides.image):
        return None
    if name not in sides.image:  # locked for this platform only
        explained = remote is None and _is_locked_version(local, sides.local[name])
    elif name not in sides.local:  # locked for the image's platform only
        explained = local is None and _is_locked_version(remote, sides.image[name])
    else:  # locked for both, at a version per platform
        explained = (
            not _same_version(sides.local[name], sides.image[name])
            and _is_locked_version(local, sides.local[name])
            and _is_locked_version(remote, sides.image[name])
        )
    return PlatformDifference(name, local, remote) if explained else None


def compare(local: LocalEnvironment, remote: EnvironmentReport, where: str) -> Comparison:
    """Compare the local environment with one cluster process's report."""
    differences: list[Difference] = []
    here = local.report
    local_python = f"{here.implementation} {here.python}"
    remote_python = f"{remote.implementation} {remote.python}"
    if local_python != remote_python:
        differences.append(Difference("python", "python", local_python, remote_python))
    if local.lock_hash is not None and local.lock_hash != remote.lock_hash:
        differences.append(
            Difference("lock", "poetry.lock", _short(local.lock_hash), _short(remote.lock_hash))
        )

    sides = local.locked
    matched = 0
    local_only: list[str] = []
    platform_only: list[PlatformDifference] = []
    split_by_lock: list[str] = []
    for name in sorted(set(here.distributions) | set(remote.distributions)):
        local_version = here.distributions.get(name)
        remote_version = remote.distributions.get(name)
        if _same_version(local_version, remote_version):
            matched += 1
            continue
        locked_anywhere = sides is not None and (name in sides.local or name in sides.image)
        if remote_version is None and not locked_anywhere and name not in SERIALIZATION:
            local_only.append(name)  # not meant for the image (dev group, daskbox, ...)
            continue
        explained = (
            _platform_difference(name, local_version, remote_version, sides)
            if sides is not None
            else None
        )
        if explained is not None:
            platform_only.append(explained)
            continue
        differences.append(Difference("package", name, local_version, remote_version))
        if (
            name in SERIALIZATION
            and sides is not None
            and name in sides.local
            and name in sides.image
            and not _same_version(sides.local[name], sides.image[name])
        ):
            split_by_lock.append(name)
    platforms = None if here.platform == remote.platform else (here.platform, remote.platform)
    local_drift = (
        bool(differences)
        and local.lock_hash is not None
        and all(d.kind == "package" for d in differences)
        and (
            sides is None
            or all(
                d.subject in sides.image and _is_locked_version(d.remote, sides.image[d.subject])
                for d in differences
            )
        )
    )
    return Comparison(
        where,
        tuple(differences),
        matched,
        tuple(local_only),
        tuple(platform_only),
        platforms,
        tuple(split_by_lock),
        remote.node,
        local_drift,
    )


def _short(lock_hash: str | None) -> str | None:
    return f"sha256:{lock_hash[:12]}" if lock_hash else None


@dataclass(frozen=True)
class CheckResult:
    """Comparisons with every checked process, and their rendering as text."""

    comparisons: tuple[Comparison, ...]
    groups: tuple[str, ...]
    extras: tuple[str, ...] = ()
    note: str | None = None  # why the check was partial, if it was

    @property
    def ok(self) -> bool:
        """True when no checked process differs from the local environment."""
        return not any(comparison.differences for comparison in self.comparisons)

    @property
    def differences(self) -> dict[Difference, tuple[str, ...]]:
        """Each distinct difference with the processes showing it, in table order."""
        where: dict[Difference, list[str]] = {}
        for comparison in self.comparisons:
            for difference in comparison.differences:
                where.setdefault(difference, []).append(comparison.where)
        ordered = sorted(where, key=lambda d: (_KIND_ORDER[d.kind], d.subject, d.remote or ""))
        return {difference: tuple(where[difference]) for difference in ordered}

    @property
    def matched(self) -> int:
        """Distributions matching on every process (the smallest count of any one)."""
        return min((comparison.matched for comparison in self.comparisons), default=0)

    @property
    def platform_only(self) -> tuple[PlatformDifference, ...]:
        """Expected differences the lock gives per platform, sorted by name."""
        found = {d for comparison in self.comparisons for d in comparison.platform_only}
        return tuple(sorted(found, key=lambda d: (d.name, d.local or "", d.remote or "")))

    @property
    def platforms(self) -> tuple[str, str] | None:
        """(local, cluster) platform, e.g. ("Darwin-arm64", "Linux-x86_64"), when they differ."""
        return next((c.platforms for c in self.comparisons if c.platforms), None)

    def _expected(self) -> str:
        """The platform part of a line: both platforms and what the lock gives each alone."""
        platforms, expected = self.platforms, self.platform_only
        if platforms is None and not expected:
            return ""
        where = f"{platforms[0]} here, {platforms[1]} there: " if platforms else ""
        count = len(expected)
        listed = f" ({', '.join(str(d) for d in expected)})" if expected else ""
        return f"{where}{count} expected {'difference' if count == 1 else 'differences'}{listed}"

    @property
    def local_only(self) -> tuple[str, ...]:
        """Sorted names installed only locally, as expected (outside the image's set)."""
        names: set[str] = set()
        for comparison in self.comparisons:
            names.update(comparison.local_only)
        return tuple(sorted(names))

    def _processes(self, wheres: Iterable[str]) -> str:
        wheres = list(wheres)
        workers = [where for where in wheres if where != SCHEDULER]
        total_workers = sum(1 for c in self.comparisons if c.where != SCHEDULER)
        parts = [SCHEDULER] if SCHEDULER in wheres else []
        if workers and len(workers) == total_workers and total_workers > 1:
            parts.append(f"all {total_workers} workers")
        elif len(workers) > 3:
            parts.append(f"{len(workers)} of {total_workers} workers")
        else:
            parts.extend(f"worker {worker}" for worker in workers)
        return ", ".join(parts)

    def table(self) -> str:
        """The differences as an aligned text table: what, local, cluster, on which processes."""
        rows = [("package", "local", "cluster", "on")]
        for difference, wheres in self.differences.items():
            rows.append(
                (
                    difference.subject,
                    difference.local or "(missing)",
                    difference.remote or "(missing)",
                    self._processes(wheres),
                )
            )
        widths = [max(len(row[column]) for row in rows) for column in range(3)]
        return "\n".join(
            "  "
            + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
            + "  "
            + row[3]
            for row in rows
        ).rstrip()

    def _scope(self) -> str:
        """What the comparison covers, e.g. "groups: main" or "groups: main; extras: tables"."""
        scope = f"groups: {', '.join(self.groups) or 'main'}"
        return scope + (f"; extras: {', '.join(self.extras)}" if self.extras else "")

    def sync_command(self) -> str:
        """The `poetry sync` that installs this image's groups and extras locally (a bare one
        would remove its optional groups and extras)."""
        command = "poetry sync"
        if groups := [group for group in self.groups if group != "main"]:
            command += f" --with {','.join(groups)}"
        if self.extras:
            command += f' --extras "{" ".join(self.extras)}"'
        return command

    def mismatch_message(self) -> str:
        """The ``EnvironmentMismatch`` text: a summary line, the table, the fix."""
        differences = self.differences
        count = len(differences)
        kinds = {difference.kind for difference in differences}
        lines = [
            f"the cluster's environment differs from the local one in {count} "
            f"{'place' if count == 1 else 'places'} ({self._scope()}):",
            self.table(),
        ]
        split = sorted({name for c in self.comparisons for name in c.split_by_lock})
        if split:
            # No rebuild helps: the lock itself gives the two platforms different versions.
            lines.append(
                f"fix: the lock gives {', '.join(split)} another version on each platform, but "
                "tasks and results cross between the two sides through "
                f"{'it' if len(split) == 1 else 'them'}: require one version for every platform "
                f"in pyproject.toml, run `poetry lock` and `{self.sync_command()}`, then "
                "`invoke build push` and relaunch"
            )
        elif all(c.local_drift for c in self.comparisons if c.differences):
            lines.append(
                f"fix: run `{self.sync_command()}`: the cluster runs the local poetry.lock, "
                "the local environment has drifted from it"
            )
            lines.append(
                "     (to run the local versions on the cluster instead, lock them "
                "(`poetry add`, `poetry lock`), then `invoke build push` and relaunch)"
            )
        else:
            lines.append(REBUILD_FIX + " so the cluster runs the local poetry.lock")
            if "lock" not in kinds and "package" in kinds:
                lines.append(
                    "     (the image was built from the local poetry.lock, so the local "
                    "environment may have drifted from it: then run "
                    f"`{self.sync_command()}` instead)"
                )
        if expected := self._expected():
            lines.append(f"expected: {expected}")
        if self.workers_per_node():
            lines.append(f"checked: {self.checked()}")
        if self.note:
            lines.append(f"note: {self.note}")
        return "\n".join(lines)

    def workers_per_node(self) -> dict[str, int]:
        """How many checked workers run on each VM (named workers only), sorted by name."""
        nodes = Counter(c.node for c in self.comparisons if c.where != SCHEDULER and c.node)
        return dict(sorted(nodes.items()))

    def checked(self) -> str:
        """The processes checked: "scheduler and 6 workers", plus the count per VM when the
        workers run on several (``on 3 VMs (a: 2, b: 2, c: 2)``)."""
        workers = sum(1 for c in self.comparisons if c.where != SCHEDULER)
        processes = f"scheduler and {workers} worker{'' if workers == 1 else 's'}"
        if len(nodes := self.workers_per_node()) > 1:
            counts = ", ".join(f"{node}: {count}" for node, count in nodes.items())
            processes += f" on {len(nodes)} VMs ({counts})"
        return processes

    def confirmation(self) -> str:
        """The one line printed when everything matches."""
        processes = self.checked()
        # daskbox first: it is the local-only package every user has.
        local_only = sorted(self.local_only, key=lambda name: (name != "daskbox", name))
        named = ", ".join(local_only[:4]) + (", ..." if len(local_only) > 4 else "")
        suffix = f" ({named})" if local_only else ""
        expected = f"; {self._expected()}" if self._expected() else ""
        note = f"; note: {self.note}" if self.note else ""
        return (
            f"environment check: {self.matched} packages match on {processes} "
            f"({self._scope()}){expected}; local-only: {len(local_only)}{suffix}{note}"
        )


def check_reports(local: LocalEnvironment, reports: Mapping[str, Mapping[str, Any]]) -> CheckResult:
    """Compare the local environment with each process's ``environment_report()`` dict."""
    comparisons = tuple(
        compare(local, EnvironmentReport.from_dict(report), where)
        for where, report in reports.items()
    )
    return CheckResult(comparisons, local.groups, local.extras, local.note)
