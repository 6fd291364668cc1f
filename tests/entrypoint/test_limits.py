"""limits.py against fake cgroup v1 and v2 trees, and the real affinity of a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from daskbox.entrypoint.limits import read_cgroup_limits, read_limits

GIB = 2**30
V1_UNLIMITED = "9223372036854771712"
HOST_CPUS = float(psutil.cpu_count(logical=True))
HOST_MEMORY = float(psutil.virtual_memory().total)


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def v1_tree(
    root: Path,
    *,
    quota: int = -1,
    period: int = 100_000,
    memory: str = V1_UNLIMITED,
    own: str = "/",
    cpu_mount: str = "cpu",
) -> Path:
    """A cgroup v1 host: /proc/self/cgroup names ``own``; limits sit in ``own``'s directory."""
    write(
        root,
        "proc/self/cgroup",
        f"12:memory:{own}\n4:cpu,cpuacct:{own}\n1:name=systemd:{own}\n0::/\n",
    )
    own_dir = own.lstrip("/")
    write(root, f"sys/fs/cgroup/{cpu_mount}/{own_dir}/cpu.cfs_quota_us", f"{quota}\n")
    write(root, f"sys/fs/cgroup/{cpu_mount}/{own_dir}/cpu.cfs_period_us", f"{period}\n")
    write(root, f"sys/fs/cgroup/memory/{own_dir}/memory.limit_in_bytes", f"{memory}\n")
    (root / "sys/fs/cgroup/unified").mkdir(
        parents=True, exist_ok=True
    )  # hybrid, as on Docker 20.10
    return root


def v2_tree(
    root: Path,
    *,
    cpu_max: str = "max 100000",
    memory_max: str = "max",
    memory_high: str = "max",
    own: str = "/",
) -> Path:
    write(root, "proc/self/cgroup", f"0::{own}\n")
    write(root, "sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory pids\n")
    own_dir = own.lstrip("/")
    write(root, f"sys/fs/cgroup/{own_dir}/cpu.max", f"{cpu_max}\n")
    write(root, f"sys/fs/cgroup/{own_dir}/memory.max", f"{memory_max}\n")
    write(root, f"sys/fs/cgroup/{own_dir}/memory.high", f"{memory_high}\n")
    return root


class TestCgroupV1:
    def test_fractional_quota_wins_over_host_cpus(self, tmp_path):
        limits = read_limits(v1_tree(tmp_path, quota=150_000, period=100_000))
        assert limits.cpus == 1.5
        assert limits.cpu.source == "cgroup v1 cpu.cfs_quota_us"

    def test_no_quota_leaves_psutil_count(self, tmp_path):
        limits = read_limits(v1_tree(tmp_path, quota=-1))
        assert read_cgroup_limits(tmp_path).cpu == ()
        assert limits.cpus == HOST_CPUS
        assert limits.cpu.source == "psutil"

    def test_quota_above_host_cpus_does_not_raise_the_count(self, tmp_path):
        limits = read_limits(v1_tree(tmp_path, quota=int(HOST_CPUS + 6) * 100_000))
        assert limits.cpus == HOST_CPUS

    def test_memory_limit_below_host_memory_wins(self, tmp_path):
        limits = read_limits(v1_tree(tmp_path, memory=str(3 * GIB)))
        assert limits.memory_bytes == 3 * GIB
        assert limits.memory.source == "cgroup v1 memory.limit_in_bytes"

    def test_unlimited_memory_is_not_a_reading(self, tmp_path):
        limits = read_limits(v1_tree(tmp_path))
        assert read_cgroup_limits(tmp_path).memory == ()
        assert limits.memory_bytes == HOST_MEMORY
        assert limits.memory.source == "psutil"

    def test_cpu_mounted_together_with_cpuacct(self, tmp_path):
        limits = read_limits(v1_tree(tmp_path, quota=50_000, cpu_mount="cpu,cpuacct"))
        assert limits.cpus == 0.5

    def test_own_nested_cgroup_and_smaller_parent_limit(self, tmp_path):
        # As on this host: memory:/process_api/<id>; a parent's limit binds its children too.
        v1_tree(tmp_path, memory=str(8 * GIB), own="/process_api/abc")
        write(tmp_path, "sys/fs/cgroup/memory/process_api/memory.limit_in_bytes", str(2 * GIB))
        assert read_limits(tmp_path).memory_bytes == 2 * GIB

    def test_container_view_where_own_path_is_the_mount_root(self, tmp_path):
        # Docker 20.10 on v1: /proc/self/cgroup says /docker/<id>, but that cgroup is
        # mounted as /sys/fs/cgroup/<controller> itself.
        v1_tree(tmp_path, quota=150_000, memory=str(3 * GIB))
        write(tmp_path, "proc/self/cgroup", "12:memory:/docker/0123abc\n4:cpu:/docker/0123abc\n")
        limits = read_limits(tmp_path)
        assert (limits.cpus, limits.memory_bytes) == (1.5, 3 * GIB)


class TestCgroupV2:
    def test_fractional_cpu_max(self, tmp_path):
        limits = read_limits(v2_tree(tmp_path, cpu_max="150000 100000"))
        assert limits.cpus == 1.5
        assert limits.cpu.source == "cgroup v2 cpu.max"

    def test_cpu_max_max_means_no_quota(self, tmp_path):
        limits = read_limits(v2_tree(tmp_path, cpu_max="max 100000"))
        assert read_cgroup_limits(tmp_path).cpu == ()
        assert limits.cpus == HOST_CPUS

    def test_memory_max(self, tmp_path):
        limits = read_limits(v2_tree(tmp_path, memory_max=str(3 * GIB)))
        assert limits.memory_bytes == 3 * GIB
        assert limits.memory.source == "cgroup v2 memory.max"

    def test_memory_high_below_memory_max(self, tmp_path):
        limits = read_limits(v2_tree(tmp_path, memory_max=str(4 * GIB), memory_high=str(3 * GIB)))
        assert limits.memory_bytes == 3 * GIB
        assert limits.memory.source == "cgroup v2 memory.high"

    def test_max_everywhere_leaves_host_values(self, tmp_path):
        limits = read_limits(v2_tree(tmp_path))
        assert (limits.cpus, limits.memory_bytes) == (HOST_CPUS, HOST_MEMORY)

    def test_limits_read_from_the_process_own_cgroup(self, tmp_path):
        v2_tree(tmp_path, own="/system.slice/daskbox.scope", cpu_max="100000 100000")
        write(tmp_path, "sys/fs/cgroup/cpu.max", "max 100000\n")  # the root has none
        assert read_limits(tmp_path).cpus == 1.0

    def test_v1_files_are_ignored_on_a_v2_host(self, tmp_path):
        v2_tree(tmp_path)
        write(tmp_path, "sys/fs/cgroup/memory/memory.limit_in_bytes", str(GIB))
        assert read_limits(tmp_path).memory_bytes == HOST_MEMORY


def test_no_cgroup_files_at_all(tmp_path):
    limits = read_limits(tmp_path)
    assert {reading.source for reading in limits.cpu_readings} <= {"psutil", "affinity"}
    assert limits.memory.source == "psutil"


@pytest.mark.skipif(HOST_CPUS < 2, reason="needs two CPUs to narrow the affinity")
def test_affinity_narrower_than_the_cpu_count(tmp_path):
    probe = (
        "import json, pathlib; from daskbox.entrypoint.limits import read_limits; "
        f"l = read_limits(pathlib.Path(r'{tmp_path}')); print(json.dumps([l.cpus, l.cpu.source]))"
    )
    output = subprocess.run(
        [sys.executable, "-c", probe],
        preexec_fn=lambda: __import__("os").sched_setaffinity(0, {0}),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert json.loads(output) == [1.0, "affinity"]
