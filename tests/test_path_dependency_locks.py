"""Every lock that holds daskbox as a path dependency lists daskbox's declared dependencies.

Poetry hashes pyproject.toml into ``content-hash`` but not a path dependency's metadata, so
``poetry check --lock`` passes a lock whose daskbox entry predates a new dependency of
daskbox. An environment installed from that lock then lacks the dependency (issue 16: the
demo died importing pyelftools on a fresh machine).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
Requirements = dict[str, tuple[SpecifierSet, str | None, frozenset[str]]]


def _declared() -> Requirements:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared: Requirements = {}
    for line in project["dependencies"]:
        requirement = Requirement(line)
        marker = str(requirement.marker) if requirement.marker else None
        declared[canonicalize_name(requirement.name)] = (
            requirement.specifier,
            marker,
            frozenset(requirement.extras),
        )
    return declared


def _locked(entry: dict[str, object]) -> Requirements:
    locked: Requirements = {}
    dependencies = entry.get("dependencies", {})
    assert isinstance(dependencies, dict)
    for name, spec in dependencies.items():
        table = spec if isinstance(spec, dict) else {"version": spec}
        version = str(table.get("version", ""))
        marker = str(Marker(table["markers"])) if "markers" in table else None
        locked[canonicalize_name(name)] = (
            SpecifierSet("" if version == "*" else version),
            marker,
            frozenset(table.get("extras", ())),
        )
    return locked


def _daskbox_entries(lock: Path) -> list[dict[str, object]]:
    packages = tomllib.loads(lock.read_text(encoding="utf-8")).get("package", [])
    return [
        package
        for package in packages
        if package["name"] == "daskbox" and package.get("source", {}).get("type") == "directory"
    ]


LOCKS = sorted(
    lock
    for folder in ("examples", "tests/fixtures")
    for lock in (ROOT / folder).rglob("poetry.lock")
    if _daskbox_entries(lock)
)


def test_the_quickstart_locks_daskbox_as_a_path_dependency() -> None:
    # The check below must have something to check: the demo's lock is one of them.
    assert ROOT / "examples/quickstart/poetry.lock" in LOCKS


@pytest.mark.parametrize("lock", LOCKS, ids=lambda lock: str(lock.relative_to(ROOT)))
def test_a_locked_path_dependency_lists_what_daskbox_declares(lock: Path) -> None:
    declared = _declared()
    for entry in _daskbox_entries(lock):
        locked = _locked(entry)
        problems = [
            f"{name}: declared {declared.get(name)}, locked {locked.get(name)}"
            for name in sorted(declared.keys() | locked.keys())
            if declared.get(name) != locked.get(name)
        ]
        assert not problems, (
            f"{lock.relative_to(ROOT)} locks daskbox with other dependencies than "
            f"pyproject.toml declares ({'; '.join(problems)}): regenerate it with "
            f"`poetry lock` in {lock.parent.relative_to(ROOT)}"
        )
