"""A worker VM whose scheduler is gone stops: after DASKBOX_ORPHAN_TIMEOUT without reaching
the scheduler's port the worker-mode entrypoint exits 0 (the VM's unit then powers it off)."""

from __future__ import annotations

import socket
import time

import pytest

from daskbox.entrypoint.orphan import SchedulerWatch, scheduler_reachable
from daskbox.entrypoint.settings import SettingsError, read_settings

from .cluster import Entrypoint, entrypoint_environ, running_entrypoint


def test_the_watch_expires_only_after_the_timeout_without_the_scheduler():
    watch = SchedulerWatch(timeout=60.0, last_seen=100.0)
    assert not watch.expired(now=159.9)
    watch.seen(now=150.0)  # reached again: the clock restarts
    assert not watch.expired(now=209.9)
    assert watch.expired(now=210.0)
    assert watch.missing_for(now=215.0) == 65.0


def test_the_orphan_timeout_defaults_to_ten_minutes_and_0_means_never():
    assert read_settings({}).orphan_timeout == 600
    assert read_settings({"DASKBOX_ORPHAN_TIMEOUT": "90s"}).orphan_timeout == 90
    assert read_settings({"DASKBOX_ORPHAN_TIMEOUT": "0"}).orphan_timeout is None


@pytest.mark.parametrize("raw", ["soon", "-1", "1e400"])
def test_a_bad_orphan_timeout_is_refused(raw: str):
    with pytest.raises(SettingsError, match=f"DASKBOX_ORPHAN_TIMEOUT='{raw}' is invalid"):
        read_settings({"DASKBOX_ORPHAN_TIMEOUT": raw})


def test_reachable_means_the_scheduler_port_accepts_a_connection():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert scheduler_reachable(f"tls://127.0.0.1:{port}", timeout=2)
    assert not scheduler_reachable(f"tls://127.0.0.1:{port}", timeout=2)


@pytest.mark.slow
def test_a_worker_whose_scheduler_is_gone_exits_0_after_the_orphan_timeout():
    with running_entrypoint(NUM_WORKERS="1") as scheduler:
        address = f"tcp://127.0.0.1:{scheduler.scheduler_port}"
        environ = entrypoint_environ(
            NUM_WORKERS="1", DASKBOX_SCHEDULER_ADDRESS=address, DASKBOX_ORPHAN_TIMEOUT="4s"
        )
        with Entrypoint(environ) as worker:
            worker.wait_for_line("worker mode: joining the scheduler at")
            scheduler.kill()  # the scheduler VM deleted by hand: no goodbye to its workers
            gone = time.monotonic()
            assert worker.wait(60) == 0
            assert time.monotonic() - gone >= 4
            assert "no scheduler at" in worker.output
