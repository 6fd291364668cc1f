"""A worker VM's watch on its scheduler: how long since the scheduler's port last answered.

A worker VM whose scheduler VM is gone (deleted, idle-stopped, preempted) would retry until
its own termination time; after ``DASKBOX_ORPHAN_TIMEOUT`` without a scheduler the
worker-mode entrypoint exits 0 instead, and the VM's unit powers it off. Pure but for
``scheduler_reachable``; standard library only (the entrypoint's imports).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

# How often worker mode probes the scheduler's port, at most (shorter for short timeouts).
PROBE_INTERVAL = 10.0


@dataclass
class SchedulerWatch:
    """The time the scheduler was last reached, on a monotonic clock."""

    timeout: float
    last_seen: float

    def seen(self, now: float) -> None:
        self.last_seen = now

    def missing_for(self, now: float) -> float:
        return now - self.last_seen

    def expired(self, now: float) -> bool:
        return self.missing_for(now) >= self.timeout

    @property
    def interval(self) -> float:
        """Seconds between probes: a few per timeout, at most ``PROBE_INTERVAL``."""
        return min(PROBE_INTERVAL, max(0.5, self.timeout / 4))


def scheduler_reachable(address: str, timeout: float = 5.0) -> bool:
    """The scheduler's port at ``address`` (``tls://HOST:PORT``) accepts a TCP connection."""
    parts = urlsplit(address)
    try:
        with socket.create_connection((str(parts.hostname), int(parts.port or 0)), timeout):
            return True
    except (OSError, ValueError):
        return False
