"""The image record: what ``invoke build`` made and ``invoke push`` published, handed on.

``build`` writes ``<project>/.daskbox/images/<os>-<arch>.json`` for the image it built (or
found up to date); ``push`` adds the digest-pinned reference. ``launch`` and ``connect`` read
the record and never plan the image again, so they need neither the Docker engine nor Poetry.
The record carries the lock's export for the image's groups and extras with its markers not
evaluated, so the environment check can tell which distributions the lock gives any
platform (the laptop's as well as the image's).   [pure, apart from reading and writing it]
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from daskbox._files import write_atomically
from daskbox.contract import DEFAULT_PLATFORM, STATE_DIR
from daskbox.errors import ImageRecordError

FORMAT_VERSION = 1
RECORDS_DIR = "images"


@dataclass(frozen=True)
class LockedDistribution:
    """One distribution of the lock's export for the image's groups and extras."""

    name: str  # normalized (PEP 503)
    version: str | None  # None for a direct reference whose version only its wheel knows
    marker: str = ""  # PEP 508 marker, "" when unconditional

    def applies_to(self, environment: Mapping[str, str]) -> bool:
        """Whether the lock installs this distribution in ``environment`` (PEP 508 values)."""
        if not self.marker:
            return True
        from packaging.markers import Marker  # only the check needs markers evaluated

        return Marker(self.marker).evaluate(dict(environment))


@dataclass(frozen=True)
class ImageRecord:
    """One built (and maybe pushed) image of the project, for one target platform."""

    reference: str  # repository:content-tag, as built
    image_id: str  # the local engine's id of the image
    platform: str  # "linux/amd64" or "linux/arm64"
    python_version: str  # the image's CPython, e.g. "3.11.7"
    target_environment: Mapping[str, str]  # PEP 508 marker values inside the image
    lock_hash: str  # sha256 of the poetry.lock the image was built from
    groups: tuple[str, ...]
    extras: tuple[str, ...]
    installed_digest: str  # sha256 of the sorted name==version lines installed in the image
    locked: tuple[LockedDistribution, ...] = ()
    pinned: str | None = None  # repository@sha256:... once pushed
    built_at: str = ""
    pushed_at: str | None = None
    version: int = FORMAT_VERSION

    def distributions_for(self, environment: Mapping[str, str]) -> dict[str, str | None]:
        """Name -> locked version of every distribution the lock gives ``environment``."""
        return {d.name: d.version for d in self.locked if d.applies_to(environment)}

    @property
    def image_distributions(self) -> dict[str, str | None]:
        """What the lock gives the image's own platform (what the image has installed)."""
        return self.distributions_for(self.target_environment)

    @property
    def repository(self) -> str:
        """The repository the image was tagged (and pushed) in."""
        return self.reference.rsplit(":", 1)[0]

    def pushed(self, pinned: str, at: str) -> ImageRecord:
        """This record after a push stored it as ``pinned``."""
        return replace(self, pinned=pinned, pushed_at=at)

    def to_json(self) -> str:
        """The file's text: every field, sorted keys."""
        return json.dumps(asdict(self), indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<image record>") -> ImageRecord:
        """Read ``to_json``'s data; anything else is a one-line ImageRecordError."""
        if not isinstance(data, Mapping) or data.get("version") != FORMAT_VERSION:
            raise ImageRecordError(
                f"{source} is not an image record this daskbox reads: run `invoke build push`"
            )
        try:
            record = cls(
                **{
                    **data,
                    "target_environment": dict(data["target_environment"]),
                    "groups": tuple(data["groups"]),
                    "extras": tuple(data["extras"]),
                    "locked": tuple(LockedDistribution(**item) for item in data["locked"]),
                }
            )
        except (TypeError, KeyError, ValueError) as error:
            raise ImageRecordError(
                f"{source} is missing or has unknown fields ({error}): run `invoke build push`"
            ) from None
        damage = record._damage()
        if damage is not None:
            raise ImageRecordError(f"{source} is damaged: {damage}: run `invoke build push`")
        return record

    def _damage(self) -> str | None:
        """Which field holds a value of the wrong type, or a marker that does not parse."""
        from packaging.markers import InvalidMarker, Marker

        texts = {
            "reference": [self.reference],
            "image_id": [self.image_id],
            "platform": [self.platform],
            "python_version": [self.python_version],
            "lock_hash": [self.lock_hash],
            "installed_digest": [self.installed_digest],
            "built_at": [self.built_at],
            "groups": self.groups,
            "extras": self.extras,
            "target_environment": [
                *self.target_environment.keys(),
                *self.target_environment.values(),
            ],
            "pinned": [] if self.pinned is None else [self.pinned],
            "pushed_at": [] if self.pushed_at is None else [self.pushed_at],
        }
        for name, parts in texts.items():
            if not all(isinstance(part, str) for part in parts):
                return f"its {name} is not text"
        for item in self.locked:
            if not isinstance(item.name, str) or not isinstance(item.version, str | None):
                return f"its locked distribution {item.name!r} has no name or version"
            if not isinstance(item.marker, str):
                return f"the marker of {item.name} is not text"
            try:
                if item.marker:
                    Marker(item.marker)
            except InvalidMarker:
                return f"the marker of {item.name} is not a PEP 508 marker: {item.marker!r}"
        return None


def platform_slug(platform: str) -> str:
    """``linux/arm64`` -> ``linux-arm64``: the record's file name."""
    return platform.replace("/", "-")


def record_path(project_root: Path, platform: str) -> Path:
    """``<project>/.daskbox/images/<os>-<arch>.json``."""
    return project_root / STATE_DIR / RECORDS_DIR / f"{platform_slug(platform)}.json"


def write_record(project_root: Path, record: ImageRecord) -> Path:
    """Write ``record`` atomically where launch and connect will look for it."""
    path = record_path(project_root, record.platform)
    # The state folder holds keys and caches: it never goes into git.
    ignore = project_root / STATE_DIR / ".gitignore"
    if not ignore.exists():
        write_atomically(ignore, "*\n")
    return write_atomically(path, record.to_json())


def read_record(project_root: Path, platform: str) -> ImageRecord:
    """The project's record for ``platform``, or a one-line error naming the fix."""
    path = record_path(project_root, platform)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ImageRecordError(
            f"no {platform} image built for {project_root.name} ({path} is missing): "
            f"run `invoke build push`"
            + ("" if platform == DEFAULT_PLATFORM else f" with --platform {platform}")
        ) from None
    except UnicodeDecodeError:
        raise ImageRecordError(f"{path} is not UTF-8 text: run `invoke build push`") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise ImageRecordError(f"{path} is not valid JSON: run `invoke build push`") from None
    return ImageRecord.from_dict(data, source=str(path))


__all__ = [
    "FORMAT_VERSION",
    "ImageRecord",
    "LockedDistribution",
    "read_record",
    "record_path",
    "write_record",
]
