"""Local environment vs the cluster's: every distribution, the Python, the platform, the lock.

Pure functions over plain reports (``daskbox.entrypoint.environment.environment_report``),
so the whole comparison is testable without a cluster. ``connect.py`` gathers the
reports and decides whether to raise or warn.

What counts as a difference, for each cluster process:

- Python (implementation and full version) or platform (system-machine) differ.
- The image's lock hash is not the sha256 of the local poetry.lock.
- A distribution on the cluster is missing locally or has another version locally.
- A distribution installed locally that the lock exports for the image's groups and extras
  (markers evaluated for the image's platform) is missing on the cluster.

Other local distributions (the dev group, daskbox itself, the project in editable mode)
are expected local-only ones: they are counted and named, not reported as differences.

The platform is compared too, although the image is always Linux: a session on macOS or
Windows sees it as a difference and connects with ``strict=False`` (the message says so).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

__all__ = [
    "CheckResult",
    "Comparison",
    "Difference",
    "EnvironmentReport",
    "LocalEnvironment",
    "check_reports",
    "compare",
]

SCHEDULER = "scheduler"
REBUILD_FIX = "fix: run `invoke build push`, then relaunch (`invoke teardown`, `invoke launch`)"

Kind = Literal["python", "platform", "lock", "package"]
_KIND_ORDER: dict[Kind, int] = {"python": 0, "platform": 1, "lock": 2, "package": 3}


@dataclass(frozen=True)
class EnvironmentReport:
    """One interpreter's environment, with distribution names canonicalized."""

    python: str  # full version, e.g. "3.11.7"
    implementation: str  # e.g. "CPython"
    platform: str  # e.g. "Linux-x86_64"
    distributions: Mapping[str, str]
    lock_hash: str | None = None

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
        )


@dataclass(frozen=True)
class LocalEnvironment:
    """This side of the comparison: the running interpreter plus what the local lock says.

    ``locked`` holds the names the lock exports for the image's groups and extras on the
    image's platform (markers evaluated). It is None when the lock could not be exported (``note``
    says why); then only the cluster's distributions are checked against local ones.
    """

    report: EnvironmentReport
    groups: tuple[str, ...]
    extras: tuple[str, ...] = ()
    lock_hash: str | None = None
    locked: frozenset[str] | None = None
    note: str | None = None


@dataclass(frozen=True)
class Difference:
    """One row of the mismatch table; None means missing on that side."""

    kind: Kind
    subject: str  # "python", "platform", "poetry.lock" or a distribution name
    local: str | None
    remote: str | None


@dataclass(frozen=True)
class Comparison:
    """The local environment against one cluster process."""

    where: str  # "scheduler" or a worker address
    differences: tuple[Difference, ...]
    matched: int  # distributions on the cluster with the same version locally
    local_only: tuple[str, ...]  # expected: local distributions outside the image groups


def _same_version(local: str, remote: str) -> bool:
    try:
        return Version(local) == Version(remote)
    except InvalidVersion:
        return local == remote


def compare(local: LocalEnvironment, remote: EnvironmentReport, where: str) -> Comparison:
    """Compare the local environment with one cluster process's report."""
    differences: list[Difference] = []
    here = local.report
    local_python = f"{here.implementation} {here.python}"
    remote_python = f"{remote.implementation} {remote.python}"
    if local_python != remote_python:
        differences.append(Difference("python", "python", local_python, remote_python))
    if here.platform != remote.platform:
        differences.append(Difference("platform", "platform", here.platform, remote.platform))
    if local.lock_hash is not None and local.lock_hash != remote.lock_hash:
        differences.append(
            Difference("lock", "poetry.lock", _short(local.lock_hash), _short(remote.lock_hash))
        )

    matched = 0
    for name, remote_version in remote.distributions.items():
        local_version = here.distributions.get(name)
        if local_version is not None and _same_version(local_version, remote_version):
            matched += 1
        else:
            differences.append(Difference("package", name, local_version, remote_version))

    expected_remotely = local.locked or frozenset()
    local_only: list[str] = []
    for name, local_version in here.distributions.items():
        if name in remote.distributions:
            continue
        if name in expected_remotely:
            differences.append(Difference("package", name, local_version, None))
        else:
            local_only.append(name)
    return Comparison(where, tuple(differences), matched, tuple(local_only))


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
            "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
            + "  " + row[3]
            for row in rows
        ).rstrip()

    def _scope(self) -> str:
        """What the comparison covers, e.g. "groups: main" or "groups: main; extras: tables"."""
        scope = f"groups: {', '.join(self.groups) or 'main'}"
        return scope + (f"; extras: {', '.join(self.extras)}" if self.extras else "")

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
        if kinds - {"platform"}:
            lines.append(REBUILD_FIX + " so the cluster runs the local poetry.lock")
        if "lock" not in kinds and "package" in kinds:
            lines.append(
                "     (the image was built from the local poetry.lock, so the local environment "
                "may have drifted from it: then run `poetry sync` instead)"
            )
        platform = next((d for d in differences if d.kind == "platform"), None)
        if platform is not None:
            # No rebuild makes a Linux image equal a macOS or Windows session.
            image_platform = (platform.remote or "").lower().replace("-", "/")
            lines.append(
                f"fix: the image is {image_platform}; connecting from another OS or CPU "
                "always differs here, so pass `connect(strict=False)` to connect anyway"
            )
        if self.note:
            lines.append(f"note: {self.note}")
        return "\n".join(lines)

    def confirmation(self) -> str:
        """The one line printed when everything matches."""
        workers = sum(1 for c in self.comparisons if c.where != SCHEDULER)
        processes = f"scheduler and {workers} worker{'' if workers == 1 else 's'}"
        # daskbox first: it is the local-only package every user has.
        local_only = sorted(self.local_only, key=lambda name: (name != "daskbox", name))
        named = ", ".join(local_only[:4]) + (", ..." if len(local_only) > 4 else "")
        suffix = f" ({named})" if local_only else ""
        note = f"; note: {self.note}" if self.note else ""
        return (
            f"environment check: {self.matched} packages match on {processes} "
            f"({self._scope()}); local-only: {len(local_only)}{suffix}{note}"
        )


def check_reports(
    local: LocalEnvironment, reports: Mapping[str, Mapping[str, Any]]
) -> CheckResult:
    """Compare the local environment with each process's ``environment_report()`` dict."""
    comparisons = tuple(
        compare(local, EnvironmentReport.from_dict(report), where)
        for where, report in reports.items()
    )
    return CheckResult(comparisons, local.groups, local.extras, local.note)
