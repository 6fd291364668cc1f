"""Find the user's project and read what daskbox needs from its pyproject.toml and poetry.lock.

Plain TOML reading, no Poetry: the lock itself is only ever read by the user's own ``poetry``
CLI (see ``daskbox.images.lock``); here are the project's name, version, package mode, Python
range, groups and extras, the ``[tool.daskbox]`` tables and the lock's content hash.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import NormalizedName, canonicalize_name

from daskbox.errors import ConfigError, LockfileError

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, before it joined the standard library
    import tomli as tomllib

TOMLDecodeError = tomllib.TOMLDecodeError


def find_project_root(start: Path | None = None) -> Path:
    """Return the nearest folder at or above ``start`` holding a pyproject.toml."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file():
            return folder
    raise ConfigError(f"no pyproject.toml in {here} or above: run daskbox inside a Poetry project")


def parse_toml(text: str) -> dict[str, Any]:
    """``tomllib.loads`` on every supported Python."""
    parsed: dict[str, Any] = tomllib.loads(text)
    return parsed


def read_pyproject(root: Path) -> dict[str, Any]:
    """Parse ``root/pyproject.toml``; a syntax error becomes a one-line ConfigError."""
    path = root / "pyproject.toml"
    try:
        return parse_toml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path} not found: run daskbox inside a Poetry project") from None
    except TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text (TOML is): save it as UTF-8") from None


def daskbox_table(root: Path, *section: str) -> dict[str, Any]:
    """Return ``[tool.daskbox]`` (or a sub-table such as ``("gcloud",)``), empty when absent.

    A key on the way that is not a table (``tool = "x"``) is a one-line ConfigError naming it.
    """
    table = read_pyproject(root)
    walked: list[str] = []
    for key in ("tool", "daskbox", *section):
        value = table.get(key, {})
        walked.append(key)
        if not isinstance(value, dict):
            dotted = ".".join(walked)
            raise ConfigError(f"[{dotted}] in {root / 'pyproject.toml'} must be a table")
        table = value
    return table


def project_name(root: Path) -> str:
    """The project's name from ``[project]`` or ``[tool.poetry]``, else the folder's name.

    Normalized like a distribution name (PEP 503: lower case, runs of ``-_.`` -> ``-``).
    A folder without a readable pyproject.toml (a path dependency, say) gives its own name.
    """
    try:
        data = read_pyproject(root)
    except ConfigError:
        data = {}
    return str(_name(data, root))


def _name(data: dict[str, Any], root: Path) -> NormalizedName:
    poetry = data.get("tool", {}).get("poetry", {})
    name = data.get("project", {}).get("name") or poetry.get("name") or root.name
    return canonicalize_name(str(name))


@dataclass(frozen=True)
class ProjectMetadata:
    """What daskbox reads from pyproject.toml itself (the lock is Poetry's business)."""

    name: NormalizedName
    version: str
    package_mode: bool  # [tool.poetry] package-mode: the project itself goes into the image
    requires_python: str | None  # [project] requires-python (PEP 440); None when not declared
    poetry_python: str | None  # [tool.poetry.dependencies] python (Poetry's syntax: ~3.10, ^3.9)
    groups: tuple[str, ...]  # "main" and every [tool.poetry.group.<name>]
    extras: tuple[str, ...]  # [project.optional-dependencies] and [tool.poetry.extras], normalized


def read_project(root: Path) -> ProjectMetadata:
    """The project's metadata, for checks made before Poetry's export runs."""
    data = read_pyproject(root)
    project = data.get("project", {})
    poetry = data.get("tool", {}).get("poetry", {})
    groups = ["main", *poetry.get("group", {})]
    if poetry.get("dev-dependencies"):  # Poetry 1.0's spelling of the dev group
        groups.append("dev")
    extras = {*project.get("optional-dependencies", {}), *poetry.get("extras", {})}
    return ProjectMetadata(
        name=_name(data, root),
        version=str(project.get("version") or poetry.get("version") or "0"),
        package_mode=bool(poetry.get("package-mode", True)),
        requires_python=project.get("requires-python"),
        poetry_python=_text_or_none(poetry.get("dependencies", {}).get("python")),
        groups=tuple(dict.fromkeys(str(canonicalize_name(g)) for g in groups)),
        extras=tuple(sorted({str(canonicalize_name(e)) for e in extras})),
    )


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def lock_path(root: Path) -> Path:
    """``root/poetry.lock``, or a one-line LockfileError when there is none."""
    path = root / "poetry.lock"
    if not path.is_file():
        raise LockfileError(f"no poetry.lock in {root}: run `poetry lock` first")
    return path


def lock_hash(root: Path) -> str:
    """sha256 hex of poetry.lock's bytes: what an image was built from, compared by launch
    and connect without Poetry."""
    return hashlib.sha256(lock_path(root).read_bytes()).hexdigest()
