"""Wait until a launched scheduler answers over TLS (with progress and a deadline)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from distributed.comm.core import connect
from distributed.security import Security

from daskbox._tasks import Progress
from daskbox.client.connection import ClientTLS

PROGRESS_EVERY = 10.0


@dataclass(frozen=True)
class SchedulerIdentity:
    """What the scheduler said about itself once it answered."""

    address: str
    workers: int


async def _identity(address: str, security: Security) -> dict[str, object]:
    """The scheduler's reply to the ``identity`` op, over one TLS connection."""
    arguments = security.get_connection_args("client")  # type: ignore[no-untyped-call]
    comm = await connect(address, timeout=5, **arguments)  # type: ignore[no-untyped-call]
    try:
        await comm.write({"op": "identity", "reply": True})
        reply: dict[str, object] = await comm.read()
        return reply
    finally:
        await comm.close()


def probe(address: str, tls: ClientTLS) -> SchedulerIdentity | None:
    """One attempt: the scheduler's identity, or None if it does not answer (yet)."""
    try:
        reply = asyncio.run(_identity(address, tls.security()))
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
