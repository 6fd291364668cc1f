"""Wait until a launched scheduler answers over TLS (with progress and a deadline)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from daskbox._tasks import Progress
from daskbox.client.connection import ClientTLS
from daskbox.client.identity import scheduler_identity

PROGRESS_EVERY = 10.0


@dataclass(frozen=True)
class SchedulerIdentity:
    """What the scheduler said about itself once it answered."""

    address: str
    workers: int


def probe(address: str, tls: ClientTLS) -> SchedulerIdentity | None:
    """One attempt: the scheduler's identity, or None if it does not answer (yet)."""
    try:
        reply = scheduler_identity(address, tls.security())
    except (OSError, TimeoutError, EOFError):
        return None
    workers = reply.get("workers")
    return SchedulerIdentity(address, len(workers) if isinstance(workers, dict) else 0)


def wait_for_scheduler(
    address: str,
    tls: ClientTLS,
    timeout: float,
    echo: Progress = print,
    still_alive: Callable[[], str | None] = lambda: None,
) -> SchedulerIdentity | None:
    """Poll until the scheduler answers with at least one worker, or ``timeout`` passes.

    ``still_alive`` returns a reason to stop early (e.g. the local container exited).
    """
    start = time.monotonic()
    last_report = start
    echo(f"waiting for the scheduler at {address} (up to {timeout:.0f} s)")
    while (elapsed := time.monotonic() - start) < timeout:
        identity = probe(address, tls)
        if identity is not None and identity.workers > 0:
            return identity
        if (reason := still_alive()) is not None:
            echo(f"stopped waiting: {reason}")
            return None
        if time.monotonic() - last_report >= PROGRESS_EVERY:
            state = "no workers yet" if identity is not None else "not answering yet"
            echo(f"  ... {state} after {elapsed:.0f} s")
            last_report = time.monotonic()
        time.sleep(1.0)
    return None
