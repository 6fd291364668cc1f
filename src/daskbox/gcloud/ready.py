"""Waiting, the one way daskbox does it: poll with doubling pauses, report progress, stop at
a deadline. And the one thing it waits for most: a launched scheduler answering over TLS."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from daskbox._tasks import Progress
from daskbox.client.connection import ClientTLS
from daskbox.client.identity import scheduler_identity

PROGRESS_EVERY = 10.0
T = TypeVar("T")


def poll(
    attempt: Callable[[], T | None],
    *,
    timeout: float,
    waiting_for: str,
    echo: Progress,
    first: float = 0.1,
    longest: float = 4.0,
    give_up: Callable[[], str | None] = lambda: None,
) -> T | None:
    """Call ``attempt`` until it returns something, pausing ``first`` seconds and doubling
    up to ``longest`` (so a quick answer costs little and a slow one few calls); None once
    ``timeout`` passes or ``give_up`` gives a reason (which is reported)."""
    start = last_report = time.monotonic()
    pause = first
    while True:
        result = attempt()
        if result is not None:
            return result
        if (reason := give_up()) is not None:
            echo(f"stopped waiting for {waiting_for}: {reason}")
            return None
        now = time.monotonic()
        if now - start >= timeout:
            return None
        if now - last_report >= PROGRESS_EVERY:
            echo(f"  ... still waiting for {waiting_for} after {now - start:.0f} s")
            last_report = now
        time.sleep(min(pause, max(0.0, start + timeout - now)))
        pause = min(pause * 2, longest)


@dataclass(frozen=True)
class SchedulerIdentity:
    """What the scheduler said about itself once it answered."""

    address: str
    workers: int
    hosts: int = 0  # distinct machines the workers run on (each VM has its own address)


def probe(
    address: str, tls: ClientTLS, give_up: Callable[[], str | None] = lambda: None
) -> SchedulerIdentity | None:
    """One attempt: the scheduler's identity, or None if it does not answer (yet), or
    ``give_up`` gives a reason while it waits (a port that accepts but never answers holds
    an attempt for its whole 5 s timeout).

    The event loop runs in a thread of its own: a Ctrl-C reaches the waiting main thread
    at once and cleanly, never half-way through building or closing an event loop.
    """
    outcome: list[dict[str, object] | BaseException | None] = []

    def attempt() -> None:
        try:
            outcome.append(scheduler_identity(address, tls.security()))
        except (OSError, TimeoutError, EOFError):
            outcome.append(None)
        except BaseException as error:  # handed to the main thread
            outcome.append(error)

    thread = threading.Thread(target=attempt, name="daskbox-probe", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
        if thread.is_alive() and give_up() is not None:
            return None  # the daemon thread ends at its own timeout
    [reply] = outcome
    if isinstance(reply, BaseException):
        raise reply
    if reply is None:
        return None
    workers = reply.get("workers")
    if not isinstance(workers, dict):
        return SchedulerIdentity(address, 0)
    hosts = {str(worker).rsplit(":", 1)[0] for worker in workers}
    return SchedulerIdentity(address, len(workers), len(hosts))


def wait_for_scheduler(
    address: str,
    tls: ClientTLS,
    timeout: float,
    echo: Progress = print,
    give_up: Callable[[], str | None] = lambda: None,
    hosts: int = 1,
) -> SchedulerIdentity | None:
    """Poll until the scheduler answers with workers on at least ``hosts`` machines (the
    scheduler VM and each worker VM), or ``timeout`` passes.

    ``give_up`` returns a reason to stop early (e.g. the local container exited).
    """
    echo(f"waiting for the scheduler at {address} (up to {timeout:.0f} s)")

    def answered() -> SchedulerIdentity | None:
        identity = probe(address, tls, give_up)
        if identity is None or identity.workers == 0 or identity.hosts < hosts:
            return None
        return identity

    return poll(
        answered,
        timeout=timeout,
        waiting_for="the scheduler and a worker"
        if hosts == 1
        else f"the scheduler and workers on {hosts} VMs",
        echo=echo,
        first=0.1,
        longest=2.0,
        give_up=give_up,
    )
