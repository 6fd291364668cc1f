"""Run ``python -m daskbox.entrypoint`` as a real subprocess and watch its output."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping

import psutil
from distributed import Client

from daskbox.contract import (
    ENV_DASHBOARD_PORT,
    ENV_SCHEDULER_PORT,
    LEGACY_ENV_MEMORY_PER_WORKER,
    LEGACY_ENV_THREADS_PER_WORKER,
    LEGACY_ENV_WORKERS,
)
from daskbox_services import free_port

START_TIMEOUT = 60


class Entrypoint:
    """A running entrypoint; ``lines`` collects its stdout and stderr as they come."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.scheduler_port = int(environ[ENV_SCHEDULER_PORT])
        self.dashboard_port = int(environ[ENV_DASHBOARD_PORT])
        self.process = subprocess.Popen(
            [sys.executable, "-m", "daskbox.entrypoint"],
            env=dict(environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float = START_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if re.search(pattern, line):
                    return line
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r}; output:\n{self.output}")

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def wait(self, timeout: float = 30) -> int:
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code

    def __enter__(self) -> Entrypoint:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Leave nothing running behind, even when the test failed."""
        if self.process.poll() is None:
            self.kill()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, psutil.Error):
            for process in self.descendants():
                with contextlib.suppress(psutil.Error):
                    process.kill()
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


def entrypoint_environ(**settings: str) -> dict[str, str]:
    """Our environment with free ports and no sizing variables but ``settings``."""
    environ = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DASKBOX_", "DASK_"))
        and name
        not in {LEGACY_ENV_WORKERS, LEGACY_ENV_THREADS_PER_WORKER, LEGACY_ENV_MEMORY_PER_WORKER}
    }
    environ[ENV_SCHEDULER_PORT] = str(free_port())
    environ[ENV_DASHBOARD_PORT] = str(free_port())
    environ.update(settings)
    return environ


@contextlib.contextmanager
def running_entrypoint(**settings: str) -> Iterator[Entrypoint]:
    """Start the entrypoint and wait until its scheduler listens."""
    with Entrypoint(entrypoint_environ(**settings)) as entrypoint:
        entrypoint.wait_for_line(r"^entrypoint \| scheduler listening at ")
        yield entrypoint


@contextlib.contextmanager
def entrypoint_and_client(workers: int, **settings: str) -> Iterator[tuple[Entrypoint, Client]]:
    """A running entrypoint with ``workers`` workers, and a client that has seen them join."""
    with (
        running_entrypoint(NUM_WORKERS=str(workers), **settings) as entrypoint,
        Client(f"tcp://127.0.0.1:{entrypoint.scheduler_port}", timeout=30) as client,
    ):
        client.wait_for_workers(workers, timeout=30)
        yield entrypoint, client
