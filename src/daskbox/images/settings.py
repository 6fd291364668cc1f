"""``[tool.daskbox]`` image settings, validated into a frozen value."""

from __future__ import annotations

import difflib
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daskbox._pyproject import daskbox_table, project_name
from daskbox.contract import DEFAULT_PLATFORM, PLATFORM_MACHINES
from daskbox.errors import ConfigError
from daskbox.image_ref import repository_component

# The keys of [tool.daskbox] this component reads; sub-tables belong to other components.
KEYS = (
    "repository",
    "base-image",
    "platform",
    "groups",
    "extras",
    "apt-packages",
    "build-apt-packages",
    "cache-max-size",
    "cache-max-age",
    "ignore-missing-libraries",
)
_SUBTABLES = ("gcloud",)


@dataclass(frozen=True)
class ImageSettings:
    """What the image is built from and where it goes."""

    repository: str
    base_image: str
    groups: tuple[str, ...] = ("main",)
    extras: tuple[str, ...] = ()
    apt_packages: tuple[str, ...] = ()
    platform: str = DEFAULT_PLATFORM  # linux/amd64 or linux/arm64
    build_apt_packages: tuple[str, ...] = ()  # for building locked sdists only
    cache: Mapping[str, str] = field(default_factory=dict)  # cache-max-size / cache-max-age
    # sonames the library check must not count as missing (the user's word that they load)
    ignore_missing_libraries: tuple[str, ...] = ()


def default_base_image() -> str:
    """``python:<local x.y.z>-slim-bookworm``: the image's interpreter equals the local one."""
    return f"python:{platform.python_version()}-slim-bookworm"


def load_settings(project_root: Path, overrides: Mapping[str, Any] | None = None) -> ImageSettings:
    """Resolve each setting as override (task flag / invoke config) > [tool.daskbox] > default.

    Unknown keys are refused with the closest known one: a misspelled ``apt_packages`` would
    otherwise silently build an image without those packages.
    """
    table = daskbox_table(project_root)
    _refuse_unknown_keys(table, f"[tool.daskbox] in {project_root / 'pyproject.toml'}")
    given = {k: v for k, v in (overrides or {}).items() if v not in (None, "", ())}
    _refuse_unknown_keys(given, "invoke config daskbox")
    merged = {**table, **given}
    default_repository = f"localhost:5000/{repository_component(project_name(project_root))}"
    return ImageSettings(
        repository=_text(merged, "repository") or default_repository,
        base_image=_text(merged, "base-image") or default_base_image(),
        groups=_names(merged, "groups") or ("main",),
        extras=_names(merged, "extras"),
        apt_packages=_names(merged, "apt-packages"),
        platform=_platform(merged),
        build_apt_packages=_names(merged, "build-apt-packages"),
        cache={k: str(merged[k]) for k in ("cache-max-size", "cache-max-age") if k in merged},
        ignore_missing_libraries=_strings(merged, "ignore-missing-libraries"),
    )


def _platform(table: Mapping[str, Any]) -> str:
    value = _text(table, "platform") or DEFAULT_PLATFORM
    if value in PLATFORM_MACHINES:
        return value
    aliases = {
        "amd64": "linux/amd64",
        "x86_64": "linux/amd64",
        "arm64": "linux/arm64",
        "aarch64": "linux/arm64",
    }
    hint = aliases.get(value.rpartition("/")[2]) or ", ".join(PLATFORM_MACHINES)
    raise ConfigError(f"platform {value!r} is not supported: use {hint}")


def _refuse_unknown_keys(table: Mapping[str, Any], source: str) -> None:
    for key in table:
        if key in KEYS or key in _SUBTABLES:
            continue
        close = difflib.get_close_matches(key, KEYS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(KEYS)})"
        raise ConfigError(f"{source}: unknown key {key!r}{hint}")


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


def _strings(table: Mapping[str, Any], key: str) -> tuple[str, ...]:
    """A list of file names, e.g. sonames: no comma-separated form (a name may hold none)."""
    value = table.get(key, [])
    if not isinstance(value, list | tuple) or not all(
        isinstance(v, str) and v.strip() for v in value
    ):
        raise ConfigError(
            f'[tool.daskbox] {key} must be a list of file names, e.g. ["libfoo.so.1"], '
            f"got {value!r}"
        )
    return tuple(dict.fromkeys(v.strip() for v in value))
