"""The emulator's catalogue: regions and zones, machine families (x86_64 and arm64) and where
each is offered, and the public Container-Optimized OS image families.

A table, not a pattern: a machine type exists only if its family, shape and size are
listed and its family is offered in the zone, as the real API answers per zone. The
figures follow Google's published machine-family pages closely enough for the checks a
client makes (architecture, vCPUs, memory); they are not a price list.
"""

from __future__ import annotations

from dataclasses import dataclass

REGIONS: dict[str, tuple[str, ...]] = {
    "us-central1": ("a", "b", "c", "f"),
    "us-east1": ("b", "c", "d"),
    "us-west1": ("a", "b", "c"),
    "europe-west1": ("b", "c", "d"),
    "europe-west4": ("a", "b", "c"),
    "asia-southeast1": ("a", "b", "c"),
}
ZONES: tuple[str, ...] = tuple(
    f"{region}-{suffix}" for region, suffixes in REGIONS.items() for suffix in suffixes
)


@dataclass(frozen=True)
class Family:
    """A machine family: its CPU architecture, its shapes (GB per vCPU) and sizes, its zones."""

    name: str
    architecture: str  # as the API spells it: X86_64 or ARM64
    shapes: dict[str, float]  # "standard" -> GB of memory per vCPU
    vcpus: tuple[int, ...]
    zones: tuple[str, ...] = ZONES
    shared_core: dict[str, tuple[int, float]] | None = None  # e2-micro -> (vCPUs, GB)


FAMILIES: tuple[Family, ...] = (
    Family(
        "e2",
        "X86_64",
        {"standard": 4, "highmem": 8, "highcpu": 1},
        (2, 4, 8, 16, 32),
        shared_core={"micro": (2, 1), "small": (2, 2), "medium": (2, 4)},
    ),
    Family(
        "n1",
        "X86_64",
        {"standard": 3.75, "highmem": 6.5, "highcpu": 0.9},
        (1, 2, 4, 8, 16, 32, 64, 96),
    ),
    Family(
        "n2",
        "X86_64",
        {"standard": 4, "highmem": 8, "highcpu": 1},
        (2, 4, 8, 16, 32, 48, 64, 80, 96, 128),
    ),
    Family(
        "n2d",
        "X86_64",
        {"standard": 4, "highmem": 8, "highcpu": 1},
        (2, 4, 8, 16, 32, 48, 64, 80, 96, 128, 224),
    ),
    Family(
        "c3",
        "X86_64",
        {"standard": 4, "highmem": 8, "highcpu": 2},
        (4, 8, 22, 44, 88, 176),
        zones=(
            "us-central1-a",
            "us-central1-b",
            "us-central1-c",
            "us-east1-b",
            "us-east1-c",
            "europe-west1-b",
            "europe-west1-c",
            "europe-west4-a",
            "europe-west4-b",
            "asia-southeast1-a",
            "asia-southeast1-b",
        ),
    ),
    Family(
        "t2d",
        "X86_64",
        {"standard": 4},
        (1, 2, 4, 8, 16, 32, 48, 60),
        zones=(
            "us-central1-a",
            "us-central1-b",
            "us-central1-c",
            "us-central1-f",
            "us-east1-b",
            "us-east1-c",
            "europe-west1-b",
            "europe-west4-a",
        ),
    ),
    Family(
        "t2a",
        "ARM64",
        {"standard": 4},
        (1, 2, 4, 8, 16, 32, 48),
        zones=(
            "us-central1-a",
            "us-central1-b",
            "us-central1-f",
            "europe-west4-a",
            "europe-west4-b",
            "asia-southeast1-b",
            "asia-southeast1-c",
        ),
    ),
    Family(
        "c4a",
        "ARM64",
        {"standard": 4, "highmem": 8, "highcpu": 2},
        (1, 2, 4, 8, 16, 32, 48, 64, 72),
        zones=(
            "us-central1-a",
            "us-central1-b",
            "us-central1-c",
            "us-east1-b",
            "us-east1-c",
            "us-east1-d",
            "europe-west1-b",
            "europe-west1-c",
            "europe-west1-d",
            "europe-west4-a",
            "europe-west4-b",
            "europe-west4-c",
            "asia-southeast1-a",
            "asia-southeast1-b",
            "asia-southeast1-c",
        ),
    ),
)


@dataclass(frozen=True)
class MachineType:
    """One machine type offered in one zone."""

    name: str
    zone: str
    architecture: str
    vcpus: int
    memory_mb: int


def machine_type(zone: str, name: str) -> MachineType | None:
    """The machine type ``name`` in ``zone``, or None when the zone does not offer it."""
    family_name, _, rest = name.partition("-")
    for family in FAMILIES:
        if family.name != family_name or zone not in family.zones:
            continue
        if family.shared_core and rest in family.shared_core:
            vcpus, memory_gb = family.shared_core[rest]
            return MachineType(name, zone, family.architecture, vcpus, int(memory_gb * 1024))
        shape, _, size = rest.rpartition("-")
        if shape in family.shapes and size.isdigit() and int(size) in family.vcpus:
            memory_mb = int(family.shapes[shape] * int(size) * 1024)
            return MachineType(name, zone, family.architecture, int(size), memory_mb)
    return None


def machine_types(zone: str) -> list[MachineType]:
    """Every machine type offered in ``zone``."""
    names = []
    for family in FAMILIES:
        if zone not in family.zones:
            continue
        names += [f"{family.name}-{shape}" for shape in family.shared_core or {}]
        names += [
            f"{family.name}-{shape}-{vcpus}" for shape in family.shapes for vcpus in family.vcpus
        ]
    return [found for name in names if (found := machine_type(zone, name)) is not None]


@dataclass(frozen=True)
class PublicImage:
    """A public image family of the ``cos-cloud`` project."""

    family: str
    name: str
    architecture: str


COS_IMAGES: tuple[PublicImage, ...] = (
    PublicImage("cos-stable", "cos-stable-125-19216-104-25", "X86_64"),
    PublicImage("cos-arm64-stable", "cos-arm64-stable-125-19216-104-25", "ARM64"),
    PublicImage("cos-117-lts", "cos-117-18613-164-4", "X86_64"),
    PublicImage("cos-arm64-117-lts", "cos-arm64-117-18613-164-4", "ARM64"),
)
IMAGE_PROJECT = "cos-cloud"
