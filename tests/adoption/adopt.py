"""Adopt daskbox in a copy of a fixture project with the README's command; read the locks.

Shared by tests/adoption/test_adoption.py and benchmarks/lock_footprint.py. The committed
fixture projects name no package source; the copy gets two, the only change the test makes
to the project before the README's command runs:

- PyPI's simple API as the primary source. Poetry asks PyPI's per-version JSON API first,
  which the machines this runs on do not serve ("Package X not found"); a legacy source reads
  only the simple pages, resolves the same versions and needs no Poetry plugin.
- the local daskbox index as a supplemental source, which Poetry asks only for what PyPI lacks
  (daskbox), so the command itself needs no ``--source``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from adoption.local_index import POETRY, REPO_ROOT, LocalIndex

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

# The commands in the README's "Set up your project", character for character.
README_ADD_COMMAND = "poetry add --group dev \"daskbox; python_version >= '3.10'\""
README_ADD_DISTRIBUTED = "poetry add \"distributed; python_version >= '3.10'\""
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "adoption"
PYPI_SIMPLE_URL = "https://pypi.org/simple/"


class PoetryFailed(Exception):
    """A Poetry command exited non-zero; ``output`` holds what it printed."""

    def __init__(self, argv: list[str], project: Path, output: str) -> None:
        super().__init__(f"`{shlex.join(argv)}` failed in {project}:\n{output}")
        self.output = output


@dataclass(frozen=True)
class LockedPackage:
    """One ``[[package]]`` of a poetry.lock (Poetry 2 may lock a name once per Python range)."""

    name: str
    version: str
    groups: frozenset[str]
    markers: str | None
    hashes: frozenset[str]
    dependencies: frozenset[str]  # canonical names, as the lock's own ``name`` keys


def read_lock(lock: Path) -> tuple[LockedPackage, ...]:
    """Every locked package of ``lock``, in file order."""
    document = tomllib.loads(lock.read_text())
    return tuple(
        LockedPackage(
            name=package["name"],
            version=package["version"],
            groups=frozenset(package.get("groups", ["main"])),
            markers=package.get("markers"),
            hashes=frozenset(file["hash"] for file in package.get("files", [])),
            dependencies=frozenset(map(canonicalize_name, package.get("dependencies", {}))),
        )
        for package in document["package"]
    )


def locked_names(packages: tuple[LockedPackage, ...]) -> set[str]:
    """The distinct names in a lock (Poetry 2 may lock a name once per Python range)."""
    return {package.name for package in packages}


def declared_python(project: Path) -> str:
    """The project's Python range as its pyproject.toml writes it (PEP 621 or Poetry's table)."""
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    if "requires-python" in pyproject.get("project", {}):
        return str(pyproject["project"]["requires-python"])
    return str(pyproject["tool"]["poetry"]["dependencies"]["python"])


def main_group_versions(packages: tuple[LockedPackage, ...]) -> dict[str, set[str]]:
    """Locked versions per name, for the packages the main group (the image) installs."""
    versions: dict[str, set[str]] = {}
    for package in packages:
        if "main" in package.groups:
            versions.setdefault(package.name, set()).add(package.version)
    return versions


@dataclass(frozen=True)
class Adoption:
    """A fixture project's lock before and after the add command, and how long it took."""

    project: Path
    before: tuple[LockedPackage, ...]
    after: tuple[LockedPackage, ...]
    add_seconds: float

    @property
    def added_names(self) -> list[str]:
        """Names locked after the command and not before, daskbox included."""
        return sorted(locked_names(self.after) - locked_names(self.before))

    @property
    def changed_main_group(self) -> dict[str, tuple[set[str], set[str]]]:
        """Main-group names whose locked versions changed (or appeared): name -> (before, after)."""
        before, after = main_group_versions(self.before), main_group_versions(self.after)
        return {
            name: (before.get(name, set()), after.get(name, set()))
            for name in before.keys() | after.keys()
            if before.get(name) != after.get(name)
        }

    def locked(self, name: str) -> list[LockedPackage]:
        """Every lock entry for ``name`` after the command."""
        return [package for package in self.after if package.name == name]

    def required_by(self, name: str) -> list[str]:
        """The locked packages that depend on ``name`` after the command."""
        return sorted({package.name for package in self.after if name in package.dependencies})


def poetry_environ(home: Path) -> dict[str, str]:
    """This process's environment, with Poetry's cache, config and venvs under ``home``.

    A fresh cache, because Poetry caches a source's release data by source name and version:
    a wheel rebuilt from changed code keeps daskbox's version, and a shared cache would hand
    Poetry the hash of an older build.
    """
    environ = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    environ.update(
        POETRY_CACHE_DIR=str(home / "cache"),
        POETRY_CONFIG_DIR=str(home / "config"),
        POETRY_VIRTUALENVS_PATH=str(home / "virtualenvs"),
    )
    return environ


def run_poetry(argv: list[str], project: Path, environ: dict[str, str]) -> str:
    """Run the real ``poetry`` CLI (daskbox's dev group installs it) in ``project``."""
    done = subprocess.run(
        [str(POETRY), *argv],
        cwd=project,
        env=environ,
        capture_output=True,
        text=True,
        check=False,
    )
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise PoetryFailed(["poetry", *argv], project, output)
    return output


def adopt(
    fixture: str,
    destination: Path,
    index: LocalIndex,
    environ: dict[str, str],
    command: str = README_ADD_COMMAND,
    prepare: Callable[[Path], None] | None = None,
) -> Adoption:
    """Copy ``fixture`` to ``destination`` (``prepare`` may edit the copy), add the sources,
    and run ``command`` there.

    ``--lock`` is appended: Poetry then stops after writing the lock instead of installing the
    whole data-science environment, which resolves nothing differently and would take minutes.
    """
    project = shutil.copytree(FIXTURES / fixture, destination)
    if prepare is not None:
        prepare(project)
    before = read_lock(project / "poetry.lock")
    for priority, name, url in (
        ("primary", "pypi-simple", PYPI_SIMPLE_URL),
        ("supplemental", "daskbox-local", index.url),
    ):
        run_poetry(["source", "add", f"--priority={priority}", name, url], project, environ)
    program, *arguments = shlex.split(command)
    if program != "poetry":
        raise ValueError(f"not a poetry command: {command}")
    start = time.perf_counter()
    run_poetry([*arguments, "--lock"], project, environ)
    add_seconds = time.perf_counter() - start
    return Adoption(project, before, read_lock(project / "poetry.lock"), add_seconds)
