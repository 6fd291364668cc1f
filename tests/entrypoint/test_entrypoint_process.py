"""The entrypoint as a subprocess with real clients: plan, restarts, signals, idle, exit codes."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest
from distributed import Client, wait

from daskbox.entrypoint.limits import read_limits
from daskbox.entrypoint.settings import read_settings
from daskbox.entrypoint.sizing import plan_sizing

from .cluster import Entrypoint, entrypoint_and_client, entrypoint_environ, running_entrypoint

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


def _orphan_maker():
    def start_orphan() -> int:
        # sh exits at once; its background sleep loses its parent and is adopted by the
        # nearest subreaper (the entrypoint), which must reap it when it ends.
        import subprocess

        script = "sleep 2 >/dev/null 2>&1 & echo $!"
        return int(subprocess.run(["sh", "-c", script], capture_output=True, text=True).stdout)

    return start_orphan


start_orphan = _orphan_maker()

# Runs the entrypoint exactly as ``python -m`` does, but sends itself SIGTERM at the moment
# dask is first imported: in the middle of the entrypoint's own startup imports, before
# anything is started. A process without a handler by then dies of the signal (as PID 1
# it would ignore it and start the cluster anyway).
SIGTERM_DURING_IMPORTS = """
import importlib.abc, os, runpy, signal, sys

class SignalOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "dask":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGTERM)
        return None

sys.meta_path.insert(0, SignalOnImport())
runpy.run_module("daskbox.entrypoint", run_name="__main__", alter_sys=True)
"""


def logged_at(lines: list[str], pattern: str) -> str:
    """The asctime ("2026-11-26 13:58:23,123") of the first line matching ``pattern``."""
    for line in lines:
        if re.search(pattern, line):
            return line.split(" | ", 1)[1].split(" - ", 1)[0]
    return ""


def process_state(process: psutil.Process) -> str:
    """ "running", "zombie" (ended, not yet reaped by its parent) or "gone" (reaped)."""
    try:
        return "zombie" if process.status() == psutil.STATUS_ZOMBIE else "running"
    except psutil.NoSuchProcess:
        return "gone"


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
        assert entrypoint.wait(timeout=30) == 0
    assert_all_gone(started)
    assert all(line.startswith(PREFIXES) for line in entrypoint.lines), entrypoint.output
    assert "entrypoint | received SIGTERM: stopping" in entrypoint.lines
    # the children's last lines were relayed before the entrypoint exited
    assert any(re.match(r"scheduler \| .*End scheduler$", line) for line in entrypoint.lines)
    assert any(re.match(r"workers \| .*End worker$", line) for line in entrypoint.lines)
    assert entrypoint.lines[-1] == "entrypoint | stopped"
    # no nanny starts before the scheduler listens (it waits for the scheduler file)
    listening = logged_at(entrypoint.lines, r"^scheduler \| .* Scheduler at: ")
    nannies = [logged_at([line], r"^workers \| .* Start Nanny at: ") for line in entrypoint.lines]
    nanny_starts = [moment for moment in nannies if moment]
    assert len(nanny_starts) == expected.workers
    assert min(nanny_starts) >= listening
    # the plan table comes first, before anything is started
    assert entrypoint.lines[0].startswith("entrypoint | seen")


def test_sigint_stops_cleanly_too():
    with running_entrypoint(NUM_WORKERS="1") as entrypoint:
        entrypoint.wait_for_line(r"^scheduler \| .*Register worker")
        started = entrypoint.descendants()
        entrypoint.process.send_signal(signal.SIGINT)
        assert entrypoint.wait(timeout=30) == 0
    assert_all_gone(started)


def test_sigterm_while_the_scheduler_is_still_starting_stops_cleanly():
    with Entrypoint(entrypoint_environ(NUM_WORKERS="2")) as entrypoint:
        entrypoint.wait_for_line(r"^entrypoint \| started workers")
        started = entrypoint.descendants()
        entrypoint.process.send_signal(signal.SIGTERM)
        code = entrypoint.wait(timeout=30)
    assert code == 0, entrypoint.output
    assert "entrypoint | received SIGTERM: stopping" in entrypoint.lines
    assert_all_gone(started)


def test_sigterm_during_the_startup_imports_starts_nothing_and_exits_0():
    environ = entrypoint_environ()
    result = subprocess.run(
        [sys.executable, "-c", SIGTERM_DURING_IMPORTS],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-2:] == [
        "entrypoint | received SIGTERM before starting: not starting",
        "entrypoint | stopped",
    ], result.stdout
    assert not any(line.startswith("entrypoint | started") for line in lines)


def test_client_shutdown_makes_the_entrypoint_exit_0():
    with entrypoint_and_client(2) as (entrypoint, client):
        started = entrypoint.descendants()
        client.shutdown()
        code = entrypoint.wait(timeout=30)
    assert code == 0, entrypoint.output
    assert "entrypoint | scheduler closed itself (idle timeout or client shutdown): stopping" in (
        entrypoint.lines
    )
    assert_all_gone(started)


def test_orphaned_grandchildren_are_adopted_and_reaped():
    with entrypoint_and_client(1) as (entrypoint, client):
        orphan_pid = client.run_on_scheduler(start_orphan)
        orphan = psutil.Process(orphan_pid)
        assert orphan.ppid() == entrypoint.process.pid  # adopted: the entrypoint is a subreaper
        # It ends after 2 s; reaped, it disappears rather than staying a zombie.
        deadline = time.monotonic() + 60
        while process_state(orphan) == "running":
            assert time.monotonic() < deadline, "the orphan did not end"
            time.sleep(0.1)
        while process_state(orphan) == "zombie":
            assert time.monotonic() < deadline, f"zombie {orphan_pid} was not reaped"
            time.sleep(0.1)
        assert process_state(orphan) == "gone"
        assert entrypoint.process.poll() is None


def test_killed_worker_comes_back_and_the_computation_completes():
    with entrypoint_and_client(2, THREADS_PER_WORKER="1") as (entrypoint, client):
        pids = client.run(os.getpid)
        futures = client.map(slow_square, range(20))
        deadline = time.monotonic() + 60
        while sum(future.done() for future in futures) < 2:
            assert time.monotonic() < deadline, "no task finished"
            time.sleep(0.05)
        victim_pid = next(iter(pids.values()))
        os.kill(victim_pid, signal.SIGKILL)
        wait(futures, timeout=120)
        assert client.gather(futures) == [x * x for x in range(20)]
        client.wait_for_workers(2, timeout=30)
        new_pids = client.run(os.getpid)
        assert victim_pid not in new_pids.values()
        assert len(new_pids) == 2
        assert entrypoint.process.poll() is None


def test_killed_scheduler_makes_the_entrypoint_exit_non_zero():
    with entrypoint_and_client(1) as (entrypoint, client):
        scheduler_pid = client.run_on_scheduler(os.getpid)
        started = entrypoint.descendants()
        os.kill(scheduler_pid, signal.SIGKILL)
        code = entrypoint.wait(timeout=30)
    assert code == 1
    assert "entrypoint | scheduler was killed by SIGKILL: stopping" in entrypoint.lines
    assert_all_gone(started)


def test_killed_workers_process_makes_the_entrypoint_exit_non_zero():
    # The nannies' own process is gone, so nothing restarts workers: leave it to the
    # container's restart policy, and take the orphaned worker processes down too.
    with entrypoint_and_client(2) as (entrypoint, _):
        started = entrypoint.descendants()
        (workers_process,) = [p for p in started if "distributed.cli.dask_worker" in p.cmdline()]
        workers_process.kill()
        code = entrypoint.wait(timeout=30)
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
    # An HTTP route module that does not exist: Scheduler() fails while the workers start.
    routes = {"DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES": '["no_such_daskbox_routes"]'}
    with Entrypoint(entrypoint_environ(**routes)) as entrypoint:
        code = entrypoint.wait(timeout=60)
    assert code == 1
    assert "entrypoint | scheduler exited with code 1: stopping" in entrypoint.lines


@pytest.mark.parametrize(
    ("variable", "what"),
    [
        ("DASKBOX_SCHEDULER_PORT", "scheduler"),
        ("DASKBOX_DASHBOARD_PORT", "dashboard"),
    ],
)
@pytest.mark.parametrize("listen_host", ["", "127.0.0.1"])
def test_a_port_in_use_is_named_before_anything_starts(variable, what, listen_host):
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        environ = entrypoint_environ(**{variable: str(port), "DASKBOX_LISTEN_HOST": listen_host})
        with Entrypoint(environ) as entrypoint:
            code = entrypoint.wait(timeout=60)
    assert code == 2
    assert entrypoint.lines[-1] == (
        f"daskbox entrypoint: port {port} ({variable}, the {what}) is already in use on "
        f"{listen_host or 'this machine'}: stop what listens there, or pick another port "
        f"(`invoke launch --{what}-port N`)"
    )
    assert not any(line.startswith("entrypoint | started") for line in entrypoint.lines)


def listening_addresses(entrypoint: Entrypoint) -> dict[int, str]:
    """Port -> address of every socket the entrypoint and its descendants listen on."""
    processes = [psutil.Process(entrypoint.process.pid), *entrypoint.descendants()]
    return {
        connection.laddr.port: connection.laddr.ip
        for process in processes
        for connection in process.net_connections(kind="inet")
        if connection.status == psutil.CONN_LISTEN
    }


@pytest.mark.parametrize("listen_host", ["127.0.0.1", ""])
def test_everything_listens_on_the_listen_host_and_the_dashboard_where_asked(listen_host):
    with entrypoint_and_client(2, DASKBOX_LISTEN_HOST=listen_host) as (entrypoint, client):
        # the scheduler reports the dashboard port that was asked for, the one it serves
        assert client.scheduler_info()["services"] == {"dashboard": entrypoint.dashboard_port}
        with urllib.request.urlopen(
            f"http://127.0.0.1:{entrypoint.dashboard_port}/health", timeout=30
        ) as response:
            assert response.read() == b"ok"
        addresses = listening_addresses(entrypoint)
    # scheduler, dashboard, and per worker: nanny, worker, worker's HTTP server
    assert len(addresses) >= 2 + 3 * 2
    assert {entrypoint.scheduler_port, entrypoint.dashboard_port} <= addresses.keys()
    if listen_host:
        assert set(addresses.values()) == {listen_host}
    else:
        assert addresses[entrypoint.dashboard_port] in {"0.0.0.0", "::"}
        assert addresses[entrypoint.scheduler_port] in {"0.0.0.0", "::"}
