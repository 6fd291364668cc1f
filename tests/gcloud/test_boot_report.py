"""The boot unit's report as launch reads it: ``BOOT_STEP_SCRIPT`` run by bash with curl
against a stand-in metadata server (the only part of the VM it talks to), and the lines
launch makes of what it published."""

from __future__ import annotations

import http.server
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from daskbox import contract
from daskbox.gcloud.boot_watch import boot_failure
from daskbox.gcloud.cloud_init import BOOT_STEP_SCRIPT

pytestmark = pytest.mark.cli
IMAGE = "registry.example.com/demo@sha256:" + "a" * 64


@pytest.fixture
def metadata() -> Iterator[tuple[str, dict[str, str]]]:
    """A metadata server reached as the HTTP proxy: PUTs of guest attributes land in a dict."""
    published: dict[str, str] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            assert self.headers.get("Metadata-Flavor") == "Google"
            prefix = "http://metadata.google.internal/computeMetadata/v1/instance/guest-attributes/"
            namespace, key = self.path.removeprefix(prefix).split("/")
            assert namespace == contract.GUEST_ATTRIBUTE_NAMESPACE
            published[key] = body
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", published
    finally:
        server.shutdown()
        server.server_close()


def _step(tmp_path, proxy: str, step: str, shell: str) -> subprocess.Popen[str]:
    """The script running ``sh -c shell`` as ``step``, its curl sent to ``proxy``."""
    script = tmp_path / "boot-step.sh"
    script.write_text(BOOT_STEP_SCRIPT)
    env = {"PATH": os.environ["PATH"], "http_proxy": proxy, "no_proxy": ""}
    argv = [shutil.which("bash") or "bash", str(script), step, "sh", "-c", shell]
    return subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_a_failed_step_publishes_its_code_and_the_entrypoints_last_line(tmp_path, metadata):
    proxy, published = metadata
    run = _step(
        tmp_path,
        proxy,
        "cluster",
        'echo plan; echo "noise" >&2; '
        f'echo "{contract.ENTRYPOINT_ERROR_PREFIX}DASKBOX_WORKERS=9: too many" >&2; '
        'echo "a later line" >&2; exit 2',
    )
    out, err = run.communicate(timeout=30)
    assert run.returncode == 2
    assert out == "plan\n"  # the step's output still reaches the journal
    assert f"{contract.ENTRYPOINT_ERROR_PREFIX}DASKBOX_WORKERS=9: too many" in err
    assert published == {
        contract.GUEST_ATTRIBUTE_BOOT_STEP: "cluster",
        contract.GUEST_ATTRIBUTE_BOOT_ERROR: "DASKBOX_WORKERS=9: too many",
        contract.GUEST_ATTRIBUTE_BOOT_EXIT: "cluster 2",
    }
    failure = boot_failure("daskbox-app", IMAGE, published)
    assert str(failure) == (
        "the cluster on daskbox-app refused its settings: DASKBOX_WORKERS=9: too many"
    )


def test_without_an_entrypoint_line_the_last_stderr_line_is_published(tmp_path, metadata):
    proxy, published = metadata
    run = _step(
        tmp_path,
        proxy,
        "pull",
        'echo "Error response from daemon: manifest unknown" >&2; echo >&2; exit 1',
    )
    run.communicate(timeout=30)
    assert run.returncode == 1
    assert published[contract.GUEST_ATTRIBUTE_BOOT_EXIT] == "pull 1"
    assert str(boot_failure("daskbox-app", IMAGE, published)) == (
        f"daskbox-app could not pull the image {IMAGE}: Error response from daemon: "
        "manifest unknown"
    )


def test_a_step_that_succeeds_reports_only_its_progress(tmp_path, metadata):
    proxy, published = metadata
    run = _step(tmp_path, proxy, "cluster", "true")
    run.communicate(timeout=30)
    assert run.returncode == 0
    assert published == {contract.GUEST_ATTRIBUTE_BOOT_STEP: "cluster"}


def test_systemds_stop_signal_reaches_the_step_and_its_exit_code_is_the_units(tmp_path, metadata):
    """systemd stops the unit with SIGTERM: the container's client must get it (and relay
    it), and the unit ends with the code the step ended with, not the shell's."""
    proxy, published = metadata
    marker = tmp_path / "started"
    run = _step(
        tmp_path,
        proxy,
        "cluster",
        f'trap "echo stopping >&2; exit 0" TERM; touch {marker}; while :; do sleep 0.1; done',
    )
    deadline = time.monotonic() + 20
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    run.send_signal(signal.SIGTERM)  # the main process only: the script relays it
    _, err = run.communicate(timeout=30)
    assert "stopping" in err
    assert run.returncode == 0
    assert contract.GUEST_ATTRIBUTE_BOOT_EXIT not in published


def test_only_final_failures_stop_the_launch():
    """A crash (exit 1) of the cluster is restarted by systemd: launch keeps waiting."""
    crashed = {
        contract.GUEST_ATTRIBUTE_BOOT_EXIT: "cluster 1",
        contract.GUEST_ATTRIBUTE_BOOT_ERROR: "Traceback",
    }
    assert boot_failure("daskbox-app", IMAGE, crashed) is None
    assert boot_failure("daskbox-app", IMAGE, {}) is None
    refused = {contract.GUEST_ATTRIBUTE_BOOT_EXIT: "workers 2"}
    assert str(boot_failure("daskbox-app-workers-x1", IMAGE, refused)) == (
        "the cluster on daskbox-app-workers-x1 refused its settings: no error output"
    )
