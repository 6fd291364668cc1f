"""Find the user's project and read its ``[tool.daskbox]`` table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomllib
from packaging.utils import canonicalize_name

from daskbox.errors import ConfigError


def find_project_root(start: Path | None = None) -> Path:
    """Return the nearest folder at or above ``start`` holding a pyproject.toml."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file():
            return folder
    raise ConfigError(f"no pyproject.toml in {here} or above: run daskbox inside a Poetry project")


def read_pyproject(root: Path) -> dict[str, Any]:
    """Parse ``root/pyproject.toml``; a syntax error becomes a one-line ConfigError."""
    path = root / "pyproject.toml"
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path} not found: run daskbox inside a Poetry project") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None


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
    name = data.get("project", {}).get("name") or data.get("tool", {}).get("poetry", {}).get("name")
    return str(canonicalize_name(str(name or root.name)))
