"""The image's Python environment: what Poetry's export gives for the target, as plain data."""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from pathlib import Path
from urllib.parse import unquote, urlsplit

from packaging.markers import Marker
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import NormalizedName, canonicalize_name

from daskbox.contract import PLATFORM_MACHINES
from daskbox.record import ImageRecord, LockedDistribution

# The default base image is Debian bookworm, whose glibc is 2.36.
DEFAULT_GLIBC = (2, 36)
# Wheels the entrypoint needs in the image (it imports both).
REQUIRED_DISTRIBUTIONS = ("distributed", "psutil")


@dataclass(frozen=True)
class Platform:
    """The platform the image runs on: linux/amd64 and the local CPython version."""

    python_version: str  # "3.11.7"
    machine: str = "x86_64"
    glibc: tuple[int, int] = DEFAULT_GLIBC

    @classmethod
    def local(cls) -> Platform:
        """The target matching this interpreter, so the image's Python equals the local one."""
        return cls(python_version=platform.python_version())

    @property
    def oci(self) -> str:
        """The platform as OCI and Docker name it, e.g. ``linux/amd64``."""
        by_machine = {machine: name for name, machine in PLATFORM_MACHINES.items()}
        return by_machine[self.machine]

    @property
    def label(self) -> str:
        """How messages name the target, e.g. ``linux/amd64 CPython 3.11.7``."""
        return f"{self.oci} CPython {self.python_version}"

    @property
    def python_minor(self) -> str:
        """``x.y`` of the target's Python."""
        return ".".join(self.python_version.split(".")[:2])

    @property
    def abi(self) -> str:
        """The target's CPython ABI tag, e.g. ``cp311``."""
        return "cp" + self.python_minor.replace(".", "")

    @property
    def platforms(self) -> tuple[str, ...]:
        """Every manylinux platform tag the target's glibc accepts, newest first."""
        major, minor = self.glibc
        tags = [f"manylinux_{major}_{m}_{self.machine}" for m in range(minor, 4, -1)]
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        tags += [f"{name}_{self.machine}" for m, name in legacy.items() if m <= minor]
        return (*tags, f"linux_{self.machine}")

    @cached_property
    def tags(self) -> frozenset[Tag]:
        """The wheel tags pip would accept on the target."""
        version = tuple(int(part) for part in self.python_minor.split("."))
        platforms = list(self.platforms)
        return frozenset(
            [
                *cpython_tags(version, abis=[self.abi], platforms=platforms),
                *compatible_tags(version, interpreter=self.abi, platforms=platforms),
            ]
        )

    @property
    def marker_environment(self) -> dict[str, str]:
        """PEP 508 marker values on the target (used to evaluate the export's markers)."""
        return {
            "implementation_name": "cpython",
            "implementation_version": self.python_version,
            "os_name": "posix",
            "platform_machine": self.machine,
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_system": "Linux",
            "platform_version": "",
            "python_full_version": self.python_version,
            "python_version": self.python_minor,
            "sys_platform": "linux",
            "extra": "",
        }


class Source(Enum):
    """Where a locked distribution comes from, which decides how it reaches the image."""

    INDEX = "index"  # a wheel (or sdist) from a package index, checked against the lock's hashes
    DIRECTORY = "directory"  # a path dependency: built into a wheel on the host
    VCS = "vcs"  # a git dependency: built into a wheel on the host
    URL = "url"  # a direct file URL (wheel or sdist)


@dataclass(frozen=True)
class Requirement:
    """One distribution of the exported set, pinned."""

    name: NormalizedName
    version: str | None
    source: Source
    url: str | None = None  # for DIRECTORY / VCS / URL
    hashes: tuple[str, ...] = ()  # "sha256:<hex>", sorted
    marker: str = ""  # the export's PEP 508 marker ("" when unconditional)

    def applies_to(self, target: Platform) -> bool:
        """Whether the lock installs this distribution on ``target``."""
        return not self.marker or Marker(self.marker).evaluate(target.marker_environment)

    @property
    def pip_line(self) -> str:
        """The requirement as one line of a --require-hashes requirements file."""
        if self.source is Source.INDEX:
            line = f"{self.name}=={self.version}"
        else:
            line = f"{self.name} @ {self.url}"
        return " ".join([line, *(f"--hash={digest}" for digest in self.hashes)])


@dataclass(frozen=True)
class Environment:
    """The exported set for one project, groups, extras and target."""

    project_name: NormalizedName
    project_version: str
    package_mode: bool
    target: Platform
    groups: tuple[str, ...]
    extras: tuple[str, ...]
    lock_hash: str  # sha256 of poetry.lock's bytes
    requirements: tuple[Requirement, ...] = field(default=())  # what the target installs
    index_options: tuple[str, ...] = field(default=())  # --index-url / --extra-index-url lines
    # Every line of the export, markers not evaluated: what the lock gives any platform.
    locked: tuple[Requirement, ...] = field(default=())

    def names(self) -> frozenset[NormalizedName]:
        """The normalized names of every exported distribution."""
        return frozenset(requirement.name for requirement in self.requirements)

    @property
    def index_requirements(self) -> tuple[Requirement, ...]:
        """Distributions installed from the index (from requirements.txt, hash-checked)."""
        return tuple(r for r in self.requirements if r.source is Source.INDEX)

    @property
    def local_requirements(self) -> tuple[Requirement, ...]:
        """Path and git dependencies: built into wheels on the host."""
        return tuple(r for r in self.requirements if r.source is not Source.INDEX)

    def requirements_txt(self) -> str:
        """The hashed requirements file the image installs from (index distributions only)."""
        return "".join(f"{r.pip_line}\n" for r in self.index_requirements)

    def image_record(
        self, *, reference: str, image_id: str, installed: Mapping[str, str], built_at: str = ""
    ) -> ImageRecord:
        """The record of an image of this environment (``installed``: name -> version of
        everything in it, the project's own wheels included)."""
        locked = [
            LockedDistribution(str(r.name), r.version or installed.get(str(r.name)), r.marker)
            for r in self.locked
        ]
        if self.package_mode:
            name = str(self.project_name)
            locked.append(LockedDistribution(name, installed.get(name)))
        return ImageRecord(
            reference=reference,
            image_id=image_id,
            platform=self.target.oci,
            python_version=self.target.python_version,
            target_environment=self.target.marker_environment,
            lock_hash=self.lock_hash,
            groups=self.groups,
            extras=self.extras,
            installed_digest=installed_set_digest(dict(installed)),
            locked=tuple(sorted(locked, key=lambda d: (d.name, d.marker))),
            built_at=built_at,
        )

    @property
    def fingerprint(self) -> str:
        """sha256 over everything that decides the installed set."""
        digest = hashlib.sha256()
        for part in (
            self.target.python_version,
            self.lock_hash,
            ",".join(self.groups),
            ",".join(self.extras),
            *self.index_options,
            *(r.pip_line for r in self.requirements),
        ):
            digest.update(part.encode() + b"\0")
        return digest.hexdigest()


def file_url_path(url: str) -> Path:
    """The local path a ``file://`` URL names (Poetry writes path dependencies this way)."""
    return Path(unquote(urlsplit(url).path))


def normalize(name: str) -> NormalizedName:
    """A distribution name in PEP 503 form, as the lock, pip and importlib.metadata compare."""
    return canonicalize_name(name)


def installed_set_digest(versions: dict[str, str]) -> str:
    """sha256 over sorted ``name==version`` lines (normalized names).

    The image's label ``dev.daskbox.installed-digest``; recomputable from importlib.metadata.
    """
    lines = sorted(f"{normalize(name)}=={version}\n" for name, version in versions.items())
    return hashlib.sha256("".join(lines).encode()).hexdigest()
