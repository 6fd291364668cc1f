"""End to end on the local target: build + push the quickstart image, launch it locally,
connect with the environment check from the quickstart's own environment, run the demo,
open the dashboard in a real browser, tear down. The README's one command does the same
steps (the coordinator's test runs it).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import psutil
import pytest
from playwright.sync_api import Error as BrowserError

from browser import first_contentful_paint, headless_chromium
from client.conftest import running_dashboard
from daskbox.client.connection import read_connection_file
from daskbox.gcloud.local import container_state
from daskbox.images import plan_image
from daskbox.images.environment import Platform
from daskbox.images.lock import export_environment
from daskbox_services import free_port

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.timeout(1200)]

REPO_ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = REPO_ROOT / "examples" / "quickstart"
DASKBOX_CLI = Path(sys.executable).parent / "daskbox"


@pytest.fixture(scope="module")
def quickstart_venv(tmp_path_factory) -> Path:
    """What `poetry install` makes in the quickstart: main + dev groups, the project editable."""
    root = tmp_path_factory.mktemp("quickstart-venv")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    exported = export_environment(QUICKSTART, Platform.local(), ("main", "dev"))
    requirements = root / "requirements.txt"
    requirements.write_text(exported.requirements_txt(), encoding="utf-8")
    pip = [
        str(python),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--no-compile",
        "--disable-pip-version-check",
    ]
    subprocess.run([*pip, "--require-hashes", "-r", str(requirements)], check=True)
    # The path dependencies (daskbox, in develop mode) and the project itself, as Poetry does;
    # their build backend (poetry-core) is in no group, so pip fetches it for the build.
    subprocess.run([*pip, "-e", str(REPO_ROOT), "-e", str(QUICKSTART)], check=True)
    return venv


def daskbox(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(DASKBOX_CLI), *args], cwd=QUICKSTART, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"daskbox {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


@dataclass(frozen=True)
class Launched:
    """The quickstart launched on the local target."""

    instance: str
    connection_file: Path
    dashboard_port: int  # the container's own (mutual TLS) dashboard


@pytest.fixture(scope="module")
def launched(registry, registry_login, base_image, docker_client) -> Iterator[Launched]:
    """Build + push the quickstart, launch it with --local; tear down and remove its images."""
    repository = f"{registry.host}/client-e2e-quickstart"
    instance = f"client-e2e-{free_port()}"
    connection_file = QUICKSTART / ".daskbox" / f"{instance}.json"
    dashboard_port = free_port()
    try:
        daskbox("build", "--repository", repository)
        daskbox("push", "--repository", repository)
        reference = plan_image(QUICKSTART, {"repository": repository}).reference
        daskbox(
            "launch",
            "--local",
            "--image",
            reference,
            "--instance",
            instance,
            "--workers",
            "2",
            "--threads-per-worker",
            "1",
            "--scheduler-port",
            str(free_port()),
            "--dashboard-port",
            str(dashboard_port),
        )
        assert connection_file.is_file()
        yield Launched(instance, connection_file, dashboard_port)
    finally:
        subprocess.run(
            [str(DASKBOX_CLI), "teardown", "--local", "--instance", instance],
            cwd=QUICKSTART,
            capture_output=True,
            check=False,
        )
        # Every tag the build made in this test's repository, whatever the plan says now.
        for image in docker_client.images.list(name=repository):
            docker_client.images.remove(image.id, force=True)
    assert container_state(instance) is None
    assert not connection_file.exists()


def test_quickstart_demo_and_check_on_the_local_target(launched, quickstart_venv):
    instance, connection_file = launched.instance, launched.connection_file
    demo = subprocess.run(
        [
            str(quickstart_venv / "bin" / "python"),
            "-m",
            "daskbox.demo",
            str(QUICKSTART),
            "--connection",
            str(connection_file),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    lines = demo.stdout.splitlines()
    assert lines[0].startswith("environment check: ")
    assert "(groups: main); local-only: " in lines[0]
    assert "daskbox" in lines[0]
    assert lines[1].startswith("dashboard: http://127.0.0.1:")
    assert lines[2].startswith("grid search of 100 penalties: best alpha ")
    assert "on the cluster (2 workers)" in demo.stdout
    print(demo.stdout)

    check = subprocess.run(
        [str(quickstart_venv / "bin" / "daskbox"), "check", "--instance", instance],
        cwd=QUICKSTART,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.startswith("environment check: ")

    # The test process's own environment (daskbox's lock, no quickstart) is not the image's.
    mismatch = subprocess.run(
        [str(DASKBOX_CLI), "check", "--instance", instance],
        cwd=QUICKSTART,
        capture_output=True,
        text=True,
        check=False,
    )
    assert mismatch.returncode == 1
    assert mismatch.stderr.startswith("error: ")
    assert "quickstart" in mismatch.stderr and "(missing)" in mismatch.stderr


def container_processes(instance: str) -> list[psutil.Process]:
    """Every process of the instance's container, seen from the host."""
    top = docker.from_env().containers.get(instance).top(ps_args="-o pid")
    return [psutil.Process(int(row[0])) for row in top["Processes"]]


def test_the_local_target_listens_on_loopback_only(launched):
    processes = container_processes(launched.instance)
    listening = {
        (connection.laddr.ip, connection.laddr.port)
        for process in processes
        for connection in process.net_connections(kind="inet")
        if connection.status == psutil.CONN_LISTEN
    }
    # scheduler, dashboard, and per worker: nanny, worker, worker's HTTP server
    assert len(listening) >= 2 + 2 * 3
    assert {ip for ip, _ in listening} == {"127.0.0.1"}
    assert ("127.0.0.1", launched.dashboard_port) in listening


def test_the_dashboard_opens_in_a_browser_through_invoke_dashboard_and_shows_the_workers(
    launched,
):
    with running_dashboard("--instance", launched.instance, cwd=QUICKSTART) as (port, line):
        assert line.startswith(f"dashboard of {launched.instance}: http://127.0.0.1:{port}/status ")
        with headless_chromium() as browser:
            page = browser.new_page()
            # The bokeh status page: a websocket through the forwarder draws its plots.
            page.goto(f"http://127.0.0.1:{port}/status", wait_until="load")
            page.wait_for_selector("canvas", timeout=60_000)
            paint = first_contentful_paint(page)
            assert paint is not None
            print(f"dashboard first contentful paint through `invoke dashboard`: {paint:.3f} s")
            assert "Dask needs bokeh" not in page.content()
            # The workers page lists both workers of the container, by address (its Bokeh
            # table lives in a shadow root, which Playwright's text locators pierce).
            page.goto(f"http://127.0.0.1:{port}/workers")
            addresses = page.get_by_text(re.compile(r"^tls://127\.0\.0\.1:\d+$"))
            addresses.first.wait_for(timeout=60_000)
            assert len(set(addresses.all_inner_texts())) == 2
            # JupyterLab's dask-labextension, given this URL, strips "/status", checks it with
            # <url>/individual-plots.json and shows each plot in a pane at its own path.
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/individual-plots.json", timeout=30
            ) as response:
                plots = json.load(response)
            assert plots["Individual Task Stream"] == "/individual-task-stream"
            page.goto(f"http://127.0.0.1:{port}{plots['Individual Task Stream']}")
            page.wait_for_selector("canvas", timeout=60_000)


def test_the_containers_own_dashboard_refuses_a_browser_and_curl_without_the_certificate(
    launched,
):
    url = f"https://127.0.0.1:{launched.dashboard_port}/status"
    with (
        headless_chromium("--ignore-certificate-errors") as browser,
        pytest.raises(BrowserError, match=r"net::ERR_"),
    ):
        browser.new_page().goto(url)
    curl = subprocess.run(
        ["curl", "--silent", "--insecure", "--max-time", "30", url],
        capture_output=True,
        text=True,
        check=False,
    )
    assert curl.returncode in {35, 55, 56} and curl.stdout == "", curl
    # With the launch's client certificate, the same request is answered.
    tls = read_connection_file(launched.connection_file).tls
    with tempfile.TemporaryDirectory() as folder:
        cert, key = Path(folder, "cert.pem"), Path(folder, "key.pem")
        cert.write_text(tls.cert_pem)
        key.write_text(tls.key_pem)
        answered = subprocess.run(
            [
                "curl",
                "--silent",
                "--insecure",
                "--max-time",
                "30",
                "--cert",
                str(cert),
                "--key",
                str(key),
                url.replace("/status", "/health"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    assert (answered.returncode, answered.stdout) == (0, "ok"), answered.stderr
