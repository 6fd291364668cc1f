"""ResourceLimits + Overrides -> SizingPlan: how many workers, threads and bytes each. Pure.

Default policy, and why:

* **One worker process per whole CPU, one thread each.** daskbox ships arbitrary code
  from the user's project, and pure-Python code holds the GIL: threads in one process
  take turns, processes run in parallel. Numeric code (numpy, pandas) releases the GIL
  and would tolerate threads, but it loses little with processes on one machine (data
  moves between workers over loopback), so the default favours the case threads hurt.
  Set ``DASKBOX_THREADS_PER_WORKER`` (and fewer workers) for thread-friendly work.
* **Every worker gets at least 1 GiB.** When memory per CPU is lower, fewer workers are
  started and the CPUs are shared out as threads instead, so no CPU goes unused. This
  cap also applies when only the threads (or the memory) per worker is set.
* **A fractional CPU limit is rounded down for workers and up for threads** (1.5 CPUs:
  one worker with two threads), so the quota can be used fully without an extra process.
* **A reserve is kept for the scheduler and the OS**: 10% of memory, at least 256 MiB
  and at most 4 GiB; the rest is split evenly as each worker's memory limit (the nanny
  restarts a worker that goes past it).

Overrides replace any of the three values; the others are still derived from the machine.
A set value that leaves a worker less than 256 MiB (a restart loop) is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dask.utils import format_bytes

from daskbox.entrypoint.limits import ResourceLimits
from daskbox.entrypoint.settings import Overrides, SettingsError

MIN_WORKER_MEMORY = 2**30
# Below this a worker cannot even start: an idle one with distributed imported holds
# ~100-150 MiB, and the nanny pauses it at 80% and restarts it at 95% of its limit, so a
# smaller limit is a restart loop, not a cluster. Only a set value can lead there.
MIN_VIABLE_WORKER_MEMORY = 256 * 2**20
RESERVE_FRACTION = 0.10
MIN_RESERVE = 256 * 2**20
MAX_RESERVE = 4 * 2**30


@dataclass(frozen=True)
class SizingPlan:
    """What to start; each ``*_source`` says why the value was chosen (shown in the plan)."""

    workers: int
    threads_per_worker: int
    memory_per_worker: int
    reserve: int
    workers_source: str
    threads_source: str
    memory_source: str


def reserve_for(memory: int) -> int:
    """Bytes kept back for the scheduler and the OS out of ``memory``."""
    return min(MAX_RESERVE, max(MIN_RESERVE, int(memory * RESERVE_FRACTION)), memory // 2)


def plan_sizing(limits: ResourceLimits, overrides: Overrides) -> SizingPlan:
    """Decide workers, threads and memory per worker; raise ``SettingsError`` when the
    overrides ask for more memory than the machine (less the reserve) has, or leave a
    worker less than ``MIN_VIABLE_WORKER_MEMORY``."""
    cpus = limits.cpus
    reserve = reserve_for(limits.memory_bytes)
    usable = limits.memory_bytes - reserve

    if overrides.workers is not None:
        workers, workers_source = overrides.workers.value, f"set by {overrides.workers.variable}"
    else:
        # Without a set count: as many workers as the CPUs allow (one per whole CPU, or
        # CPUs / the threads per worker set), but no more than the memory allows (1 GiB
        # each, or the memory per worker set), so a set value never yields a plan the
        # machine cannot hold when fewer workers would fit.
        if overrides.threads_per_worker is not None:
            by_cpu = max(1, math.floor(cpus / overrides.threads_per_worker.value))
            cpu_reason = "CPUs / threads per worker, rounded down"
        else:
            by_cpu, cpu_reason = max(1, math.floor(cpus)), "one per whole CPU"
        per_worker = (
            overrides.memory_per_worker.value
            if overrides.memory_per_worker is not None
            else MIN_WORKER_MEMORY
        )
        by_memory = max(1, usable // per_worker)
        workers = min(by_cpu, by_memory)
        workers_source = cpu_reason if workers == by_cpu else "as many as memory allows"

    if overrides.threads_per_worker is not None:
        threads = overrides.threads_per_worker.value
        threads_source = f"set by {overrides.threads_per_worker.variable}"
    else:
        threads = max(1, math.ceil(cpus / workers))
        threads_source = "CPUs / workers, rounded up"

    if overrides.memory_per_worker is not None:
        memory = overrides.memory_per_worker.value
        if memory < MIN_VIABLE_WORKER_MEMORY:
            raise SettingsError(
                f"{overrides.memory_per_worker.variable}: {format_bytes(memory)} per worker is "
                f"below what a worker needs to start: expected at least "
                f"{format_bytes(MIN_VIABLE_WORKER_MEMORY)}"
            )
        if memory * workers > usable:
            raise SettingsError(
                f"{overrides.memory_per_worker.variable}: {format_bytes(memory)} x {workers} "
                f"worker(s) is more than the {format_bytes(usable)} available "
                f"({format_bytes(limits.memory_bytes)} from {limits.memory.source} less "
                f"{format_bytes(reserve)} reserve): expected at most "
                f"{format_bytes(usable // workers)} per worker"
            )
        memory_source = f"set by {overrides.memory_per_worker.variable}"
    else:
        memory = usable // workers
        memory_source = "(memory - reserve) / workers"
        if memory < MIN_VIABLE_WORKER_MEMORY and overrides.workers is not None:
            raise SettingsError(
                f"{overrides.workers.variable}={overrides.workers.value}: "
                f"{format_bytes(usable)} available ({format_bytes(limits.memory_bytes)} from "
                f"{limits.memory.source} less {format_bytes(reserve)} reserve) leaves "
                f"{format_bytes(memory)} per worker: expected at most "
                f"{max(1, usable // MIN_VIABLE_WORKER_MEMORY)} workers "
                f"({format_bytes(MIN_VIABLE_WORKER_MEMORY)} each)"
            )

    return SizingPlan(
        workers=workers,
        threads_per_worker=threads,
        memory_per_worker=memory,
        reserve=reserve,
        workers_source=workers_source,
        threads_source=threads_source,
        memory_source=memory_source,
    )


def render_plan(limits: ResourceLimits, plan: SizingPlan) -> str:
    """The plan as a small table: what was seen and from where, what was decided and why."""
    rows: list[tuple[str, str, str, str]] = []
    for reading in limits.cpu_readings:
        used = "  <- used" if reading is limits.cpu else ""
        rows.append(("seen", "cpus", f"{reading.value:g}", reading.source + used))
    for reading in limits.memory_readings:
        used = "  <- used" if reading is limits.memory else ""
        rows.append(("seen", "memory", format_bytes(int(reading.value)), reading.source + used))
    rows += [
        ("decided", "reserve", format_bytes(plan.reserve), "scheduler + OS"),
        ("decided", "workers", str(plan.workers), plan.workers_source),
        ("decided", "threads per worker", str(plan.threads_per_worker), plan.threads_source),
        ("decided", "memory per worker", format_bytes(plan.memory_per_worker), plan.memory_source),
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    return "\n".join(
        f"{stage:<{widths[0]}}  {item:<{widths[1]}}  {value:>{widths[2]}}  {source}"
        for stage, item, value, source in rows
    )
