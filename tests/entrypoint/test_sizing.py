"""sizing.py: the default policy and overrides as a table of (limits, overrides) -> plan."""

from __future__ import annotations

import pytest

from daskbox.entrypoint.limits import Reading, ResourceLimits
from daskbox.entrypoint.settings import Override, Overrides, SettingsError
from daskbox.entrypoint.sizing import (
    MIN_VIABLE_WORKER_MEMORY,
    plan_sizing,
    render_plan,
    reserve_for,
)

GIB = 2**30
MIB = 2**20


def machine(cpus: float, memory: int) -> ResourceLimits:
    return ResourceLimits(
        cpu_readings=(Reading(64.0, "psutil"), Reading(cpus, "cgroup v2 cpu.max")),
        memory_readings=(
            Reading(512.0 * GIB, "psutil"),
            Reading(float(memory), "cgroup v2 memory.max"),
        ),
    )


@pytest.mark.parametrize(
    ("memory", "reserve"),
    [
        (1 * GIB, 256 * MIB),  # floor
        (3 * GIB, int(3 * GIB * 0.1)),  # 10%
        (24 * GIB, int(24 * GIB * 0.1)),
        (256 * GIB, 4 * GIB),  # ceiling
        (300 * MIB, 150 * MIB),  # never more than half of a tiny machine
    ],
)
def test_reserve(memory, reserve):
    assert reserve_for(memory) == reserve


@pytest.mark.parametrize(
    ("cpus", "memory", "workers", "threads"),
    [
        (1.0, 4 * GIB, 1, 1),
        (1.5, 3 * GIB, 1, 2),  # fractional: one worker, threads use the half CPU
        (2.0, 24 * GIB, 2, 1),
        (2.5, 8 * GIB, 2, 2),
        (16.0, 64 * GIB, 16, 1),
        (64.0, 256 * GIB, 64, 1),
        (8.0, 4 * GIB, 3, 3),  # 1 GiB per worker at least: memory caps the workers
        (4.0, 1 * GIB, 1, 4),
        (0.5, 2 * GIB, 1, 1),
    ],
)
def test_default_policy(cpus, memory, workers, threads):
    plan = plan_sizing(machine(cpus, memory), Overrides())
    assert (plan.workers, plan.threads_per_worker) == (workers, threads)
    assert plan.memory_per_worker == (memory - reserve_for(memory)) // workers
    assert plan.workers * plan.memory_per_worker <= memory - plan.reserve


@pytest.mark.parametrize(
    ("overrides", "workers", "threads", "memory_per_worker"),
    [
        (
            Overrides(workers=Override(4, "NUM_WORKERS")),
            4,
            2,
            (16 * GIB - reserve_for(16 * GIB)) // 4,
        ),
        (Overrides(workers=Override(1, "DASKBOX_WORKERS")), 1, 8, 16 * GIB - reserve_for(16 * GIB)),
        (
            Overrides(threads_per_worker=Override(4, "THREADS_PER_WORKER")),
            2,
            4,
            (16 * GIB - reserve_for(16 * GIB)) // 2,
        ),
        (
            Overrides(threads_per_worker=Override(16, "THREADS_PER_WORKER")),
            1,
            16,
            16 * GIB - reserve_for(16 * GIB),
        ),
        (
            Overrides(memory_per_worker=Override(4 * GIB, "DASKBOX_MEMORY_PER_WORKER")),
            3,
            3,
            4 * GIB,
        ),
        (
            Overrides(
                workers=Override(2, "NUM_WORKERS"),
                threads_per_worker=Override(3, "THREADS_PER_WORKER"),
                memory_per_worker=Override(5 * 10**9, "MEMORY_PER_WORKER"),
            ),
            2,
            3,
            5 * 10**9,
        ),
    ],
)
def test_overrides(overrides, workers, threads, memory_per_worker):
    plan = plan_sizing(machine(8.0, 16 * GIB), overrides)
    assert (plan.workers, plan.threads_per_worker, plan.memory_per_worker) == (
        workers,
        threads,
        memory_per_worker,
    )
    for override in (overrides.workers, overrides.threads_per_worker, overrides.memory_per_worker):
        if override is not None:
            assert f"set by {override.variable}" in render_plan(machine(8.0, 16 * GIB), plan)


@pytest.mark.parametrize(
    ("overrides", "workers", "threads"),
    [
        # only the threads set: still no more workers than memory holds at 1 GiB each
        (Overrides(threads_per_worker=Override(1, "THREADS_PER_WORKER")), 2, 1),
        (Overrides(threads_per_worker=Override(2, "THREADS_PER_WORKER")), 2, 2),
        # threads and memory set: as many workers as both allow, instead of a refusal
        (
            Overrides(
                threads_per_worker=Override(1, "THREADS_PER_WORKER"),
                memory_per_worker=Override(GIB, "DASKBOX_MEMORY_PER_WORKER"),
            ),
            2,
            1,
        ),
    ],
)
def test_derived_worker_count_respects_memory_on_a_small_memory_machine(
    overrides, workers, threads
):
    limits = machine(8.0, 3 * GIB)  # 8 CPUs but 2.7 GiB usable: room for 2 workers
    plan = plan_sizing(limits, overrides)
    assert (plan.workers, plan.threads_per_worker) == (workers, threads)
    assert plan.workers * plan.memory_per_worker <= 3 * GIB - plan.reserve
    assert plan.workers_source == "as many as memory allows"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            Overrides(memory_per_worker=Override(100 * MIB, "DASKBOX_MEMORY_PER_WORKER")),
            r"^DASKBOX_MEMORY_PER_WORKER: 100.00 MiB per worker is below what a worker needs",
        ),
        (
            Overrides(workers=Override(32, "NUM_WORKERS")),
            r"^NUM_WORKERS=32: 3.60 GiB available \(4.00 GiB from cgroup v2 memory.max less "
            r"409.60 MiB reserve\) leaves 115.20 MiB per worker: expected at most 14 workers",
        ),
    ],
)
def test_a_setting_that_leaves_a_worker_too_little_memory_is_refused(overrides, message):
    with pytest.raises(SettingsError, match=message):
        plan_sizing(machine(8.0, 4 * GIB), overrides)


def test_small_machine_without_settings_still_gets_one_worker():
    # No setting to blame: a tiny machine runs one worker with what it has.
    plan = plan_sizing(machine(1.0, 400 * MIB), Overrides())
    assert (plan.workers, plan.memory_per_worker) == (1, 400 * MIB - reserve_for(400 * MIB))
    assert plan.memory_per_worker < MIN_VIABLE_WORKER_MEMORY


def test_memory_override_above_what_is_available_is_refused():
    overrides = Overrides(
        workers=Override(2, "NUM_WORKERS"),
        memory_per_worker=Override(2 * 10**9, "MEMORY_PER_WORKER"),
    )
    with pytest.raises(SettingsError, match=r"^MEMORY_PER_WORKER: .* x 2 worker\(s\) is more than"):
        plan_sizing(machine(2.0, 4 * GIB), overrides)


def test_plan_table_names_each_source_and_the_one_used():
    limits = machine(1.5, 3 * GIB)
    lines = render_plan(limits, plan_sizing(limits, Overrides())).splitlines()
    assert [line.split()[0] for line in lines] == ["seen"] * 4 + ["decided"] * 4
    used = [line for line in lines if line.endswith("<- used")]
    assert len(used) == 2
    assert all("cgroup v2" in line for line in used)
    assert any("1.5" in line for line in used)
