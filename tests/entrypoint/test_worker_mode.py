"""Worker mode: with a scheduler address the entrypoint starts only nannies and workers,
sized by the same plan, named after the node, joining that scheduler; settings refused as
the rest; a real two-"VM" cluster (two entrypoints) computes, and a scheduler that closes
its workers makes the worker-mode entrypoint exit 0 (a worker VM then powers off)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest
from distributed import Client

from daskbox.entrypoint.processes import workers_process
from daskbox.entrypoint.settings import Overrides, Settings, SettingsError, read_settings

from .certs import make_authority
from .cluster import Entrypoint, entrypoint_environ, running_entrypoint
from .test_processes import PLAN


def test_worker_mode_runs_only_workers_joining_the_address():
    settings = Settings(Overrides(), scheduler_address="tcp://10.0.0.2:9000", node_name="vm-a")
    workers = workers_process(settings, PLAN, None)
    assert workers.argv[:4] == (
        sys.executable,
        "-m",
        "distributed.cli.dask_worker",
        "tcp://10.0.0.2:9000",
    )
    assert "--scheduler-file" not in workers.argv
    name = workers.argv.index("--name")
    assert workers.argv[name + 1] == "vm-a"  # workers vm-a-0, vm-a-1, vm-a-2
    assert workers.argv[workers.argv.index("--nworkers") + 1] == "3"  # the same plan


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"DASKBOX_SCHEDULER_ADDRESS": "10.0.0.2:8786"}, "expected an address such as tcp://"),
        ({"DASKBOX_SCHEDULER_ADDRESS": "tcp://10.0.0.2"}, "expected an address such as tcp://"),
        ({"DASKBOX_SCHEDULER_ADDRESS": "tls://10.0.0.2:8786"}, "no TLS files are set"),
        ({"DASKBOX_NODE_NAME": "a b"}, "DASKBOX_NODE_NAME='a b' is invalid"),
    ],
)
def test_bad_worker_settings_are_refused(environ, message):
    with pytest.raises(SettingsError, match=message):
        read_settings(environ)


def test_tls_needs_a_tls_address(tmp_path: Path):
    files, _ = make_authority(tmp_path, "worker-mode")
    environ = {
        "DASKBOX_TLS_CA_FILE": str(files.ca_file),
        "DASKBOX_TLS_CERT_FILE": str(files.cert_file),
        "DASKBOX_TLS_KEY_FILE": str(files.key_file),
    }
    with pytest.raises(SettingsError, match="uses tcp:// but the TLS files are set"):
        read_settings({**environ, "DASKBOX_SCHEDULER_ADDRESS": "tcp://10.0.0.2:8786"})
    settings = read_settings({**environ, "DASKBOX_SCHEDULER_ADDRESS": "tls://10.0.0.2:8786"})
    assert settings.worker_mode and settings.scheduler_address == "tls://10.0.0.2:8786"


@pytest.mark.slow
def test_a_worker_mode_entrypoint_joins_computes_and_exits_0_when_closed():
    with running_entrypoint(NUM_WORKERS="1", DASKBOX_NODE_NAME="vm-a") as first:
        address = f"tcp://127.0.0.1:{first.scheduler_port}"
        environ = entrypoint_environ(
            NUM_WORKERS="2", DASKBOX_NODE_NAME="vm-b", DASKBOX_SCHEDULER_ADDRESS=address
        )
        with Entrypoint(environ) as joiner:
            with Client(address, timeout=30) as client:
                client.wait_for_workers(3, timeout=60)
                names = sorted(info["name"] for info in client.scheduler_info()["workers"].values())
                assert names == ["vm-a", "vm-b-0", "vm-b-1"]
                assert sum(client.gather(client.map(abs, range(-10, 0)))) == 55
                # Only workers in worker mode: no scheduler, no dashboard on its ports.
                assert "worker mode: joining the scheduler at" in joiner.output
                assert "started scheduler" not in joiner.output
                client.retire_workers(
                    [
                        a
                        for a, w in client.scheduler_info()["workers"].items()
                        if w["name"].startswith("vm-b")
                    ],
                    close_workers=True,
                )
            assert joiner.wait(60) == 0
            assert "workers closed by their scheduler" in joiner.output
        first.process.send_signal(signal.SIGTERM)
        assert first.wait() == 0
