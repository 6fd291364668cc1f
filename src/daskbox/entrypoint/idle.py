"""Scheduler preload: connected clients count as activity for the scheduler's idle timeout.

distributed's own ``idle-timeout`` (``Scheduler.check_idle``) closes the scheduler when no
task has been processing for that long, even while a client is still connected. daskbox
promises "no client and no task", so while any client is connected this keeps restarting
the scheduler's idle clock (``idle_since``); the clock starts when the last client leaves.
Loaded with ``dask scheduler --preload daskbox.entrypoint.idle``; the timeout itself and the
close (reason ``idle-timeout-exceeded``) stay distributed's.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

# The scheduler's own bookkeeping client, present with or without users.
_INTERNAL_CLIENTS = frozenset({"fire-and-forget"})
_CHECK_INTERVAL = 0.1  # seconds; below check_idle's 250 ms, so a connected client always wins


def _user_clients(scheduler: Any) -> set[str]:
    return set(scheduler.clients) - _INTERNAL_CLIENTS


class ClientsKeepAlive(SchedulerPlugin):
    """Hold the scheduler's idle clock at zero while a user client is connected."""

    name = "daskbox-clients-keep-alive"

    def __init__(self) -> None:
        self._holder: asyncio.Task[None] | None = None

    async def start(self, scheduler: Any) -> None:
        self._holder = asyncio.create_task(self._hold_while_connected(scheduler))

    async def _hold_while_connected(self, scheduler: Any) -> None:
        while True:
            if _user_clients(scheduler):
                scheduler.idle_since = None
            await asyncio.sleep(_CHECK_INTERVAL)

    def remove_client(self, scheduler: Any, client: str) -> None:
        if not _user_clients(scheduler):
            scheduler.idle_since = None  # the idle window starts when the last client leaves

    async def close(self) -> None:
        if self._holder is not None:
            self._holder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._holder


def dask_setup(scheduler: Any) -> None:
    """Preload hook, run in ``Scheduler.start``; the scheduler then starts its plugins."""
    scheduler.add_plugin(ClientsKeepAlive())
