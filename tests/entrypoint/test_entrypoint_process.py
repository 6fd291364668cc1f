"""The entrypoint as a subprocess with real clients: plan, restarts, signals, idle, exit codes."""

from __future__ import annotations

import os
import signal
import socket
import time

import psutil
import pytest
from distributed import Client

from daskbox.entrypoint.limits import read_limits
from daskbox.entrypoint.settings import read_settings
from daskbox.entrypoint.sizing import plan_sizing

from .cluster import Entrypoint, entrypoint_environ, running_entrypoint

pytestmark = pytest.mark.slow

PREFIXES = ("entrypoint | ", "scheduler | ", "workers | ")


def _by_value():
    # The cluster's processes cannot import this test module; a local function is not
    # importable by name, so distributed ships it by value (cloudpickle).
    def slow_square(x: int) -> int:
        time.sleep(0.3)
        return x * x

    return slow_square


slow_square = _by_value()


def assert_all_gone(processes: list[psutil.Process]) -> None:
    assert processes, "expected the entrypoint to have started processes"
    alive = [process for process in processes if process.is_running()]
    assert alive == [], f"left behind: {alive}"


def test_client_sees_the_plan_and_sigterm_stops_everything():
    expected = plan_sizing(read_limits(), read_settings({}).overrides)
    with running_entrypoint() as entrypoint:
        with Client(f"tcp://127.0.0.1:{entrypoint.scheduler_port}", timeout=30) as client:
            client.wait_for_workers(expected.workers, timeout=30)
            workers = client.scheduler_info(n_workers=-1)["workers"].values()
            assert len(workers) == expected.workers
            assert {w["nthreads"] for w in workers} == {expected.threads_per_worker}
            assert {w["memory_limit"] for w in workers} == {expected.memory_per_worker}
            assert client.submit(slow_square, 7).result(timeout=30) == 49
            # distributed's pre-spawn environment reaches workers started by forkserver
            omp_threads = client.run(lambda: os.environ.get("OMP_NUM_THREADS"))
            assert set(omp_threads.values()) == {"1"}
        started = entrypoint.descendants()
        # scheduler, the workers process, one worker process per nanny (+ multiprocessing's
        # resource tracker)
        assert len(started) >= 2 + expected.workers
        entrypoint.process.send_signal(signal.SIGTERM)
        assert entrypoint.wait(timeout=15) == 0
    assert_all_gone(started)
    assert all(line.startswith(PREFIXES) for line in entrypoint.lines), entrypoint.output
    assert "entrypoint | received SIGTERM: stopping" in entrypoint.lines
    assert entrypoint.lines[-1] == "entrypoint | stopped"
    # the plan table comes first, before anything is started
    assert entrypoint.lines[0].startswith("entrypoint | seen")


def test_sigint_stops_cleanly_too():
    with running_entrypoint(NUM_WORKERS="1") as entrypoint:
        entrypoint.wait_for_line(r"^scheduler \| .*Register worker")
        started = entrypoint.descendants()
        entrypoint.process.send_signal(signal.SIGINT)
        assert entrypoint.wait(timeout=15) == 0
    assert_all_gone(started)


def test_killed_worker_comes_back_and_the_computation_completes():
    with (
        running_entrypoint(NUM_WORKERS="2", THREADS_PER_WORKER="1") as entrypoint,
        Client(f"tcp://127.0.0.1:{entrypoint.scheduler_port}", timeout=30) as client,
    ):
        client.wait_for_workers(2, timeout=30)
        pids = client.run(os.getpid)
        futures = client.map(slow_square, range(20))
        while sum(future.done() for future in futures) < 2:
            time.sleep(0.05)
        victim_pid = next(iter(pids.values()))
        os.kill(victim_pid, signal.SIGKILL)
        assert client.gather(futures) == [x * x for x in range(20)]
        client.wait_for_workers(2, timeout=30)
        new_pids = client.run(os.getpid)
        assert victim_pid not in new_pids.values()
        assert len(new_pids) == 2
        assert entrypoint.process.poll() is None


def test_killed_scheduler_makes_the_entrypoint_exit_non_zero():
    with (
        running_entrypoint(NUM_WORKERS="1") as entrypoint,
        Client(f"tcp://127.0.0.1:{entrypoint.scheduler_port}", timeout=30) as client,
    ):
        client.wait_for_workers(1, timeout=30)
        scheduler_pid = client.run_on_scheduler(os.getpid)
        started = entrypoint.descendants()
        os.kill(scheduler_pid, signal.SIGKILL)
        code = entrypoint.wait(timeout=15)
    assert code == 1
    assert "entrypoint | scheduler was killed by SIGKILL: stopping" in entrypoint.lines
    assert_all_gone(started)


def test_killed_workers_process_makes_the_entrypoint_exit_non_zero():
    # The nannies' own process is gone, so nothing restarts workers: leave it to the
    # container's restart policy, and take the orphaned worker processes down too.
    with (
        running_entrypoint(NUM_WORKERS="2") as entrypoint,
        Client(f"tcp://127.0.0.1:{entrypoint.scheduler_port}", timeout=30) as client,
    ):
        client.wait_for_workers(2, timeout=30)
        started = entrypoint.descendants()
        (workers_process,) = [p for p in started if "distributed.cli.dask_worker" in p.cmdline()]
        workers_process.kill()
        code = entrypoint.wait(timeout=15)
    assert code == 1
    assert "entrypoint | workers process was killed by SIGKILL: stopping" in entrypoint.lines
    assert_all_gone(started)


def test_idle_timeout_waits_for_clients_then_exits_zero_by_itself():
    with running_entrypoint(NUM_WORKERS="1", DASKBOX_IDLE_TIMEOUT="2s") as entrypoint:
        with Client(f"tcp://127.0.0.1:{entrypoint.scheduler_port}", timeout=30) as client:
            client.wait_for_workers(1, timeout=30)
            time.sleep(4)  # twice the timeout, with a client connected and no task
            assert entrypoint.process.poll() is None, entrypoint.output
            started = entrypoint.descendants()
        assert entrypoint.wait(timeout=30) == 0
    assert entrypoint.wait_for_line(r"Scheduler closing after being idle for 2\.00 s")
    assert "entrypoint | scheduler closed itself (idle timeout or client shutdown): stopping" in (
        entrypoint.lines
    )
    assert_all_gone(started)


def test_scheduler_that_cannot_start_makes_the_entrypoint_exit_non_zero():
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        entrypoint = Entrypoint(entrypoint_environ(DASKBOX_SCHEDULER_PORT=str(port)))
        try:
            code = entrypoint.wait(timeout=60)
        finally:
            if entrypoint.process.poll() is None:
                entrypoint.kill()
    assert code == 1
    assert "entrypoint | scheduler exited with code 1: stopping" in entrypoint.lines
