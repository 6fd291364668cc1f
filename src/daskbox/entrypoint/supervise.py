"""Run the scheduler, then the workers; relay their logs and signals; decide the exit code.

The only module here with side effects on processes. It is written to be PID 1 in a
container: it handles SIGTERM/SIGINT itself (PID 1 has no default signal actions), reaps
every child including orphaned grandchildren (it also registers as a child subreaper, so
the same holds when it is not PID 1), and kills whatever is left before it returns.

Exit codes: 0 after a signal or when the scheduler closed itself cleanly (its idle
timeout, or a client's shutdown); 1 when the scheduler or the workers process died.

Reaping uses ``os.waitpid(-1)`` rather than psutil or Popen: only a wait on "any child"
collects the orphans the kernel hands to a subreaper, which no Popen object knows.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psutil

from daskbox.contract import ENV_ORPHAN_TIMEOUT
from daskbox.entrypoint.orphan import SchedulerWatch, scheduler_reachable
from daskbox.entrypoint.processes import ProcessSpec, scheduler_process, workers_process
from daskbox.entrypoint.settings import Settings
from daskbox.entrypoint.sizing import SizingPlan
from daskbox.entrypoint.stop import StopRequest, signal_name

POLL_INTERVAL = 0.02
SCHEDULER_START_TIMEOUT = 60.0
# SIGTERM must end everything within 10 s (Docker's default before SIGKILL): workers get
# up to 5 s to close, the scheduler what is left of 8 s, then whatever remains is killed
# (1 s) and the last log lines drained (0.5 s).
WORKERS_GRACE = 5.0
GRACEFUL_STOP = 8.0
KILL_WAIT = 1.0
LOG_DRAIN_TIMEOUT = 0.5
# When the workers process ends cleanly first, how long to wait for the scheduler to end:
# on an idle timeout or a client's shutdown() the scheduler closes its workers and then
# itself, and under load the workers process can be the first to exit.
SCHEDULER_CLOSING_GRACE = 5.0
_PR_SET_CHILD_SUBREAPER = 36


@dataclass
class Child:
    """A started process; ``returncode`` is set by the supervisor's reaper, not by Popen."""

    spec: ProcessSpec
    popen: subprocess.Popen[bytes]
    relays: list[threading.Thread] = field(default_factory=list)
    returncode: int | None = None

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.popen.pid

    @property
    def running(self) -> bool:
        """Not yet reaped by the supervisor."""
        return self.returncode is None


class LogRelay:
    """Copy children's output line by line to ours, each line prefixed with its process."""

    def __init__(self, stdout: IO[bytes], stderr: IO[bytes]) -> None:
        self.stdout, self.stderr = stdout, stderr
        self.lock = threading.Lock()

    def write(self, stream: IO[bytes], prefix: bytes, line: bytes) -> None:
        """Write one prefixed, newline-terminated line to ``stream`` (whole, under the lock)."""
        if not line.endswith(b"\n"):
            line += b"\n"
        # If our own output is gone (a closed pipe), drop the line but keep reading the
        # child's pipe: a child blocked on a full pipe would hang the cluster.
        with self.lock, contextlib.suppress(OSError, ValueError):
            stream.write(prefix + line)
            stream.flush()

    def follow(self, pipe: IO[bytes], stream: IO[bytes], name: str) -> threading.Thread:
        """Copy ``pipe`` to ``stream`` as ``name | ...`` lines in a thread until it closes."""
        prefix = f"{name} | ".encode()

        def copy_lines() -> None:
            with pipe:
                for line in pipe:
                    self.write(stream, prefix, line)

        thread = threading.Thread(target=copy_lines, name=f"log-{name}", daemon=True)
        thread.start()
        return thread

    def say(self, message: str) -> None:
        """A line from the entrypoint itself."""
        self.write(self.stdout, b"entrypoint | ", message.encode())


class Supervisor:
    """Starts children in their own process groups and tracks them until they are reaped."""

    def __init__(self, relay: LogRelay, stop: StopRequest) -> None:
        self.relay = relay
        self.stop = stop
        self.children: list[Child] = []

    def start(self, spec: ProcessSpec) -> Child:
        popen = subprocess.Popen(
            spec.argv,
            env={**os.environ, **spec.env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # Own group: a terminal's Ctrl-C reaches only us, and we can kill a child's
            # whole tree (nanny -> worker processes) with one killpg.
            start_new_session=True,
        )
        assert popen.stdout is not None and popen.stderr is not None
        child = Child(spec, popen)
        child.relays = [
            self.relay.follow(popen.stdout, self.relay.stdout, spec.name),
            self.relay.follow(popen.stderr, self.relay.stderr, spec.name),
        ]
        self.children.append(child)
        self.relay.say(f"started {spec.name} (pid {child.pid}): {' '.join(spec.argv[1:])}")
        return child

    def reap(self) -> None:
        """Collect every exited child, ours or orphaned onto us, without blocking."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for child in self.children:
                if child.pid == pid:
                    child.returncode = os.waitstatus_to_exitcode(status)

    def wait_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Reap and poll until ``condition()`` holds or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:
            self.reap()
            if condition():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_INTERVAL)

    def terminate(self, child: Child, grace: float) -> None:
        """SIGTERM ``child`` and wait up to ``grace`` s; what is left is for ``kill_leftovers``."""
        if not child.running:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGTERM)
        if not self.wait_until(lambda: not child.running, grace):
            self.relay.say(f"{child.spec.name} did not stop within {grace:g} s: killing it")

    def kill_leftovers(self) -> None:
        """SIGKILL every process group we started and any descendant still around."""
        for child in self.children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
        for process in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                process.kill()
        self.wait_until(
            lambda: (
                not any(child.running for child in self.children)
                and not psutil.Process().children()
            ),
            timeout=KILL_WAIT,
        )

    def drain_logs(self) -> None:
        """Let the relay threads copy the children's last lines, for at most 0.5 s in all."""
        deadline = time.monotonic() + LOG_DRAIN_TIMEOUT
        for child in self.children:
            for relay in child.relays:
                relay.join(max(0.0, deadline - time.monotonic()))


def _become_subreaper() -> None:
    """Adopt orphaned descendants (as PID 1 does), so none outlives us unnoticed."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _read_scheduler_address(scheduler_file: Path) -> str | None:
    """The address the scheduler wrote once listening, or None before that."""
    try:
        return str(json.loads(scheduler_file.read_text())["address"])
    except (OSError, ValueError, KeyError):  # not yet written, or half-written
        return None


def _describe_exit(returncode: int | None) -> str:
    """``"exited with code 1"`` or ``"was killed by SIGKILL"``, for the last log line."""
    if returncode is not None and returncode < 0:
        return f"was killed by {signal_name(-returncode)}"
    return f"exited with code {returncode}"


def run_cluster(settings: Settings, plan: SizingPlan, relay: LogRelay, stop: StopRequest) -> int:
    """Start scheduler then workers, supervise them, stop everything; return the exit code.

    ``stop`` is the request caught since the entrypoint started (see stop.py); a signal
    received before this point means nothing is started at all.
    """
    supervisor = Supervisor(relay, stop)
    _become_subreaper()
    if settings.worker_mode:
        try:
            return _supervise_workers(supervisor, settings, plan)
        finally:
            _stop(supervisor)
    with tempfile.TemporaryDirectory(prefix="daskbox-entrypoint-") as workdir:
        scheduler_file = Path(workdir) / "scheduler.json"
        try:
            return _supervise(supervisor, settings, plan, scheduler_file)
        finally:
            _stop(supervisor)


def _supervise(
    supervisor: Supervisor, settings: Settings, plan: SizingPlan, scheduler_file: Path
) -> int:
    """Start both children and wait for the first thing that ends the cluster; the exit code."""
    relay, stop = supervisor.relay, supervisor.stop
    if stop.requested:
        relay.say(f"received {stop.name} before starting: not starting")
        return 0
    scheduler = supervisor.start(scheduler_process(settings, scheduler_file))
    if stop.requested:  # arrived while the scheduler was being started
        relay.say(f"received {stop.name}: stopping")
        return 0
    # Started at once so its ~0.4 s of imports overlap the scheduler's; its nannies read
    # the scheduler file, which the scheduler writes only once it accepts connections,
    # so no worker connects (or is even spawned) before the scheduler is listening.
    workers = supervisor.start(workers_process(settings, plan, scheduler_file, os.environ))
    address: str | None = None

    def scheduler_ready_or_gone() -> bool:
        nonlocal address
        address = _read_scheduler_address(scheduler_file)
        return address is not None or not scheduler.running or stop.requested

    if not supervisor.wait_until(scheduler_ready_or_gone, SCHEDULER_START_TIMEOUT):
        relay.say(f"scheduler did not listen within {SCHEDULER_START_TIMEOUT:g} s")
        return 1
    if address is not None and not stop.requested:
        relay.say(f"scheduler listening at {address}")
        supervisor.wait_until(
            lambda: not scheduler.running or not workers.running or stop.requested,
            timeout=float("inf"),
        )
    if scheduler.running and workers.returncode == 0 and not stop.requested:
        # A workers process that exits 0 by itself was most likely closed by a scheduler
        # that is closing itself (idle timeout, shutdown()): give the scheduler time to end.
        supervisor.wait_until(
            lambda: not scheduler.running or stop.requested, SCHEDULER_CLOSING_GRACE
        )
    if stop.requested:
        relay.say(f"received {stop.name}: stopping")
        return 0
    if scheduler.running:
        relay.say(f"workers process {_describe_exit(workers.returncode)}: stopping")
        return 1
    if scheduler.returncode == 0:
        relay.say("scheduler closed itself (idle timeout or client shutdown): stopping")
        return 0
    relay.say(f"scheduler {_describe_exit(scheduler.returncode)}: stopping")
    return 1


def _supervise_workers(supervisor: Supervisor, settings: Settings, plan: SizingPlan) -> int:
    """Worker mode: only the workers process, joining ``settings.scheduler_address``.

    Its nannies keep trying to reach the scheduler (it may still be booting, or restarting).
    Exit 0 when the workers process ends cleanly (the scheduler closed them: its idle
    timeout or a client's shutdown, and a worker VM then powers off), 1 when it dies.
    """
    relay, stop = supervisor.relay, supervisor.stop
    if stop.requested:
        relay.say(f"received {stop.name} before starting: not starting")
        return 0
    address = settings.scheduler_address
    relay.say(f"worker mode: joining the scheduler at {address}")
    workers = supervisor.start(workers_process(settings, plan, None, os.environ))
    if settings.orphan_timeout is None:
        supervisor.wait_until(lambda: not workers.running or stop.requested, timeout=float("inf"))
        return _workers_ended(relay, stop, workers.returncode)
    watch = SchedulerWatch(settings.orphan_timeout, last_seen=time.monotonic())
    while True:
        supervisor.wait_until(lambda: stop.requested, timeout=watch.interval)
        if scheduler_reachable(address, timeout=min(5.0, watch.interval)):
            watch.seen(time.monotonic())
        elif watch.expired(time.monotonic()):
            # An orphan: the VM powers off (exit 0) rather than bill until its termination.
            relay.say(
                f"no scheduler at {address} for {watch.missing_for(time.monotonic()):.0f}s "
                f"({ENV_ORPHAN_TIMEOUT}={settings.orphan_timeout:g}s): orphaned, stopping"
            )
            return 0
        if stop.requested or workers.returncode == 0:
            return _workers_ended(relay, stop, workers.returncode)
        if not workers.running and watch.last_seen >= time.monotonic() - watch.interval * 2:
            # The workers died while their scheduler answers: a failure (the unit restarts).
            return _workers_ended(relay, stop, workers.returncode)
        # Died with the scheduler unreachable: wait out the orphan timeout before deciding.


def _workers_ended(relay: LogRelay, stop: StopRequest, returncode: int | None) -> int:
    if stop.requested:
        relay.say(f"received {stop.name}: stopping")
        return 0
    if returncode == 0:
        relay.say("workers closed by their scheduler (idle timeout or shutdown): stopping")
        return 0
    relay.say(f"workers process {_describe_exit(returncode)}: stopping")
    return 1


def _stop(supervisor: Supervisor) -> None:
    """Workers first (they say goodbye to the scheduler), then the scheduler, then the rest,
    all within ``GRACEFUL_STOP`` + ``KILL_WAIT`` + ``LOG_DRAIN_TIMEOUT`` (< 10 s)."""
    deadline = time.monotonic() + GRACEFUL_STOP
    for child in reversed(supervisor.children):
        remaining = max(0.0, deadline - time.monotonic())
        grace = remaining if child.spec.name == "scheduler" else min(WORKERS_GRACE, remaining)
        supervisor.terminate(child, grace)
    supervisor.kill_leftovers()
    supervisor.drain_logs()
    supervisor.relay.say("stopped")
