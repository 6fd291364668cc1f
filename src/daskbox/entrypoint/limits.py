"""What the machine really offers: CPUs and memory, the minimum over every source.

Reads psutil (logical CPUs, total memory), the process's CPU affinity, and the cgroup
limits of the process's own cgroup (v1: ``cpu.cfs_quota_us``/``cpu.cfs_period_us`` and
``memory.limit_in_bytes``; v2: ``cpu.max``, ``memory.max`` and ``memory.high``), like
``dask.system.cpu_count`` and ``distributed.system.memory_limit`` do, but keeps every
reading with its source so the plan can say which one won.

The filesystem root is a parameter so tests can hand in a fake ``/proc`` + ``/sys`` tree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

# Kernels report "no limit" as a huge number (v1: PAGE_COUNTER_MAX * page size, ~2**63).
_UNLIMITED_BYTES = 2**60


@dataclass(frozen=True)
class Reading:
    """One observed limit and where it was seen (e.g. ``"cgroup v1 cpu.cfs_quota_us"``)."""

    value: float
    source: str


@dataclass(frozen=True)
class ResourceLimits:
    """Every CPU and memory reading; the effective limit is the smallest of each."""

    cpu_readings: tuple[Reading, ...]
    memory_readings: tuple[Reading, ...]

    @property
    def cpu(self) -> Reading:
        """The binding CPU limit (possibly fractional, e.g. 1.5 from a cgroup quota)."""
        return min(self.cpu_readings, key=lambda reading: reading.value)

    @property
    def memory(self) -> Reading:
        """The binding memory limit in bytes."""
        return min(self.memory_readings, key=lambda reading: reading.value)

    @property
    def cpus(self) -> float:
        """The binding CPU limit's value."""
        return self.cpu.value

    @property
    def memory_bytes(self) -> int:
        """The binding memory limit's value, in whole bytes."""
        return int(self.memory.value)


@dataclass(frozen=True)
class CgroupLimits:
    """Limits found in the process's own cgroup and its ancestors (empty when none)."""

    cpu: tuple[Reading, ...] = ()
    memory: tuple[Reading, ...] = ()


def read_limits(root: Path = Path("/")) -> ResourceLimits:
    """Combine psutil's view of this process with the cgroup limits under ``root``."""
    cgroup = read_cgroup_limits(root)
    return ResourceLimits(
        cpu_readings=(*host_cpu_readings(), *cgroup.cpu),
        memory_readings=(Reading(float(psutil.virtual_memory().total), "psutil"), *cgroup.memory),
    )


def host_cpu_readings() -> tuple[Reading, ...]:
    """Logical CPUs and, where the platform has it, the CPUs this process may run on."""
    readings = [Reading(float(psutil.cpu_count(logical=True) or 1), "psutil")]
    try:
        affinity = psutil.Process().cpu_affinity()
    except (AttributeError, psutil.Error):  # no affinity API on this platform
        affinity = None
    if affinity:
        readings.append(Reading(float(len(affinity)), "affinity"))
    return tuple(readings)


def read_cgroup_limits(root: Path) -> CgroupLimits:
    """Read the CPU quota and memory limits of this process's cgroup (v2 or v1) under ``root``."""
    membership = _cgroup_membership(root / "proc/self/cgroup")
    mount = root / "sys/fs/cgroup"
    if (mount / "cgroup.controllers").is_file():  # unified hierarchy: cgroup v2 only
        return _v2_limits(mount, membership.get("", "/"))
    return _v1_limits(mount, membership)


def _cgroup_membership(path: Path) -> dict[str, str]:
    """Map each controller (``""`` for v2) to this process's cgroup path, from /proc/self/cgroup."""
    try:
        text = path.read_text()
    except OSError:
        return {}
    membership: dict[str, str] = {}
    for line in text.splitlines():
        _, controllers, cgroup_path = line.split(":", 2)
        for controller in controllers.split(","):
            membership[controller.removeprefix("name=")] = cgroup_path
    return membership


def _own_and_ancestors(mount: Path, cgroup_path: str) -> Iterator[Path]:
    """Directories from the process's cgroup up to the mount root; limits are inherited.

    Inside a container the mount root usually *is* the container's cgroup and the path from
    /proc/self/cgroup does not exist below it; the walk then just reaches the root.
    """
    directory = mount / cgroup_path.lstrip("/")
    while True:
        if directory.is_dir():
            yield directory
        if directory == mount or mount not in directory.parents:
            return
        directory = directory.parent


def _read_words(path: Path) -> list[str] | None:
    """The whitespace-separated words of a cgroup file, or None when it cannot be read."""
    try:
        return path.read_text().split()
    except OSError:
        return None


def _v2_limits(mount: Path, cgroup_path: str) -> CgroupLimits:
    """cpu.max, memory.max and memory.high of the cgroup and its ancestors ("max": no limit)."""
    cpu: list[Reading] = []
    memory: list[Reading] = []
    for directory in _own_and_ancestors(mount, cgroup_path):
        words = _read_words(directory / "cpu.max")
        if words and words[0] != "max":
            quota, period = int(words[0]), int(words[1]) if len(words) > 1 else 100_000
            cpu.append(Reading(quota / period, "cgroup v2 cpu.max"))
        for name in ("memory.max", "memory.high"):
            words = _read_words(directory / name)
            if words and words[0] != "max" and int(words[0]) < _UNLIMITED_BYTES:
                memory.append(Reading(float(words[0]), f"cgroup v2 {name}"))
    return CgroupLimits(cpu=tuple(cpu), memory=tuple(memory))


def _v1_controller_mount(mount: Path, controller: str) -> Path | None:
    """The v1 hierarchy holding ``controller`` (``cpu`` may be mounted as ``cpu,cpuacct``)."""
    for name in (controller, f"{controller},cpuacct", f"cpuacct,{controller}"):
        if (mount / name).is_dir():
            return mount / name
    return None


def _v1_limits(mount: Path, membership: dict[str, str]) -> CgroupLimits:
    """CFS quota/period and memory.limit_in_bytes of the cgroup and its ancestors."""
    cpu: list[Reading] = []
    memory: list[Reading] = []
    cpu_mount = _v1_controller_mount(mount, "cpu")
    if cpu_mount is not None:
        for directory in _own_and_ancestors(cpu_mount, membership.get("cpu", "/")):
            quota = _read_words(directory / "cpu.cfs_quota_us")
            period = _read_words(directory / "cpu.cfs_period_us")
            if quota and period and int(quota[0]) > 0 and int(period[0]) > 0:
                cpu.append(Reading(int(quota[0]) / int(period[0]), "cgroup v1 cpu.cfs_quota_us"))
    memory_mount = _v1_controller_mount(mount, "memory")
    if memory_mount is not None:
        for directory in _own_and_ancestors(memory_mount, membership.get("memory", "/")):
            words = _read_words(directory / "memory.limit_in_bytes")
            if words and int(words[0]) < _UNLIMITED_BYTES:
                memory.append(Reading(float(words[0]), "cgroup v1 memory.limit_in_bytes"))
    return CgroupLimits(cpu=tuple(cpu), memory=tuple(memory))
