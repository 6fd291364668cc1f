"""Catch SIGTERM/SIGINT from the entrypoint's first moment. Stdlib only, imported first.

As PID 1 in a container the kernel drops every signal the process has no handler for, so
a ``docker stop`` that arrives during the ~0.3 s the entrypoint spends importing dask
would be lost and the cluster would start anyway, until the SIGKILL 10 s later. Catching
the signals before those imports closes that window; the supervisor reads the request.
"""

from __future__ import annotations

import signal
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """The first stop signal received, or None; later ones change nothing."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def catch(self) -> StopRequest:
        """Install the handlers (main thread only); returns ``self``."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._record)
        return self

    def _record(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is None:
            self.signal = signum

    @property
    def requested(self) -> bool:
        """Whether a stop signal has arrived."""
        return self.signal is not None

    @property
    def name(self) -> str:
        """The signal's name, e.g. ``"SIGTERM"`` (empty when none was received)."""
        return "" if self.signal is None else signal_name(self.signal)


def signal_name(signum: int) -> str:
    """``"SIGTERM"`` for 15; ``"signal N"`` for a number with no name."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
