"""What adopting daskbox adds to a project's lock: packages before/after, which, and why.

Run:  .venv/bin/python benchmarks/lock_footprint.py [FIXTURE ...]

For each data-science project in tests/fixtures/adoption/ (all of them by default), a copy
adopts daskbox with the README's command, exactly as tests/adoption does: daskbox's wheel is
built from this checkout and served on loopback, everything else resolves from PyPI, and
Poetry's cache starts empty. Counts are distinct package names in poetry.lock (Poetry 2 may
lock one name several times, once per Python range). Target: at most 10 added.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from packaging.markers import Marker  # noqa: E402

from adoption.adopt import (  # noqa: E402  (the tests' adoption helpers)
    FIXTURES,
    README_ADD_COMMAND,
    Adoption,
    adopt,
    declared_python,
    locked_names,
    poetry_environ,
)
from adoption.local_index import serving_daskbox_index  # noqa: E402

TARGET_MAX_ADDED = 10


def python_floor(fixture: str) -> tuple[int, int]:
    """The lowest Python a fixture supports, to list the projects from the oldest range."""
    version = re.search(r"(\d+)\.(\d+)", declared_python(FIXTURES / fixture))
    return (int(version[1]), int(version[2])) if version else (0, 0)


def added_with_reasons(adoption: Adoption) -> list[str]:
    """Each added name with the packages that require it, and whether it installs here.

    Its lock markers are shown only when they keep it off this machine (Linux, CPython):
    such a package is in the lock but never in the environment (docker's pywin32).
    """
    described = []
    for name in adoption.added_names:
        required_by = ", ".join(adoption.required_by(name)) or "the command"
        markers = [package.markers for package in adoption.locked(name) if package.markers]
        skipped_here = markers and not any(Marker(marker).evaluate() for marker in markers)
        where = f"; not installed on Linux: {' or '.join(markers)}" if skipped_here else ""
        described.append(f"{name} (required by {required_by}{where})")
    return described


def already_locked_requirements(adoption: Adoption) -> list[str]:
    """What the added packages require that the project had locked already (no new entry)."""
    added = set(adoption.added_names)
    required = {
        dependency
        for package in adoption.after
        if package.name in added
        for dependency in package.dependencies
    }
    return sorted(required - added)


def print_report(adoptions: dict[str, Adoption]) -> None:
    print(f"command: {README_ADD_COMMAND}\n")
    print("| project | Python | names locked before (entries) | after | added | main-group moves |")
    print("| --- | --- | --- | --- | --- | --- |")
    for fixture, adoption in adoptions.items():
        moved = ", ".join(sorted(adoption.changed_main_group)) or "none"
        print(
            f"| {fixture} | `{declared_python(FIXTURES / fixture)}`"
            f" | {len(locked_names(adoption.before))} ({len(adoption.before)})"
            f" | {len(locked_names(adoption.after))} ({len(adoption.after)})"
            f" | {len(adoption.added_names)} | {moved} |"
        )
    for fixture, adoption in adoptions.items():
        print(f"\n{fixture} (poetry add: {adoption.add_seconds:.1f} s):")
        for line in added_with_reasons(adoption):
            print(f"  + {line}")
        print(f"  = already locked, shared: {', '.join(already_locked_requirements(adoption))}")
    over = [name for name, a in adoptions.items() if len(a.added_names) > TARGET_MAX_ADDED]
    print(f"\ntarget: at most {TARGET_MAX_ADDED} added; over it: {', '.join(over) or 'none'}")


def main(argv: list[str] | None = None) -> None:
    fixture_names = (path.name for path in FIXTURES.iterdir() if path.is_dir())
    available = sorted(fixture_names, key=python_floor)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fixtures", nargs="*", metavar="FIXTURE", help=", ".join(available))
    fixtures = parser.parse_args(argv).fixtures or available
    unknown = sorted(set(fixtures) - set(available))
    if unknown:
        parser.error(f"unknown fixture(s): {', '.join(unknown)}")
    with tempfile.TemporaryDirectory(prefix="daskbox-footprint-") as scratch_name:
        scratch = Path(scratch_name)
        environ = poetry_environ(scratch / "poetry-home")
        with serving_daskbox_index(scratch / "index") as index:
            adoptions = {
                fixture: adopt(fixture, scratch / "projects" / fixture, index, environ)
                for fixture in fixtures
            }
    print_report(adoptions)


if __name__ == "__main__":
    main()
