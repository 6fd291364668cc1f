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


def probe(address: str, tls: ClientTLS) -> SchedulerIdentity | None:
    """One attempt: the scheduler's identity, or None if it does not answer (yet).

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
    thread.join()
    [reply] = outcome
    if isinstance(reply, BaseException):
        raise reply
    if reply is None:
        return None
    workers = reply.get("workers")
    return SchedulerIdentity(address, len(workers) if isinstance(workers, dict) else 0)


def wait_for_scheduler(
    address: str,
    tls: ClientTLS,
    timeout: float,
    echo: Progress = print,
    give_up: Callable[[], str | None] = lambda: None,
) -> SchedulerIdentity | None:
    """Poll until the scheduler answers with at least one worker, or ``timeout`` passes.

    ``give_up`` returns a reason to stop early (e.g. the local container exited).
    """
    echo(f"waiting for the scheduler at {address} (up to {timeout:.0f} s)")

    def answered() -> SchedulerIdentity | None:
        identity = probe(address, tls)
        return identity if identity is not None and identity.workers > 0 else None

    return poll(
        answered,
        timeout=timeout,
        waiting_for="the scheduler and a worker",
        echo=echo,
        first=0.1,
        longest=2.0,
        give_up=give_up,
    )
