"""``[tool.daskbox]`` image settings, validated into a frozen value."""

from __future__ import annotations

import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daskbox._pyproject import daskbox_table, read_pyproject
from daskbox.errors import ConfigError


@dataclass(frozen=True)
class ImageSettings:
    """What the image is built from and where it goes."""

    repository: str
    base_image: str
    groups: tuple[str, ...] = ("main",)
    extras: tuple[str, ...] = ()
    apt_packages: tuple[str, ...] = ()


def default_base_image() -> str:
    """``python:<local x.y.z>-slim-bookworm``: the image's interpreter equals the local one."""
    return f"python:{platform.python_version()}-slim-bookworm"


def load_settings(project_root: Path, overrides: Mapping[str, Any] | None = None) -> ImageSettings:
    """Resolve each setting as override (task flag / invoke config) > [tool.daskbox] > default."""
    table = daskbox_table(project_root)
    merged = {**table, **{k: v for k, v in (overrides or {}).items() if v not in (None, "", ())}}
    return ImageSettings(
        repository=_text(merged, "repository") or f"localhost:5000/{_project_name(project_root)}",
        base_image=_text(merged, "base-image") or default_base_image(),
        groups=_names(merged, "groups") or ("main",),
        extras=_names(merged, "extras"),
        apt_packages=_names(merged, "apt-packages"),
    )


def _project_name(project_root: Path) -> str:
    data = read_pyproject(project_root)
    name = data.get("project", {}).get("name") or data.get("tool", {}).get("poetry", {}).get("name")
    return str(name or project_root.name).lower().replace("_", "-")


def _text(table: Mapping[str, Any], key: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"[tool.daskbox] {key} must be a string, got {value!r}")
    return value.strip()


def _names(table: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = table.get(key)
    if value is None:
        return ()
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"[tool.daskbox] {key} must be a list of names, got {value!r}")
    return tuple(dict.fromkeys(v.strip() for v in value))
