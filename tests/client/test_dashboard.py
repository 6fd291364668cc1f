"""The dashboard through daskbox's forwarder, against the real entrypoint over mutual TLS.

The entrypoint runs as the image runs it (``python -m daskbox.entrypoint`` with the launch's
TLS files, listening on 127.0.0.1 as the local target does), from this interpreter; the
connection file is what a launch writes. Bokeh's pages need the image (the quickstart's
end-to-end test opens those); here the scheduler's own HTML pages show what is served.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Error as BrowserError

from browser import headless_chromium
from client.conftest import running_dashboard
from daskbox import connect
from daskbox.client.connect import security_for, start_dashboard
from daskbox.client.connection import (
    ConnectionFile,
    read_connection_file,
    write_connection_file,
)
from daskbox.client.dashboard import DashboardForwarder, DashboardPortInUse
from daskbox.gcloud.tls import make_tls_material
from daskbox_services import free_port
from entrypoint.cluster import Entrypoint, running_entrypoint

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

DASKBOX_CLI = Path(sys.executable).parent / "daskbox"
WORKERS = 2


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[tuple[Entrypoint, Path]]:
    """A running TLS entrypoint with its connection file."""
    folder = tmp_path_factory.mktemp("dashboard")
    tls = make_tls_material("dashboard-tests")
    files = {}
    for name, pem in (
        ("ca", tls.server.ca_pem),
        ("cert", tls.server.cert_pem),
        ("key", tls.server.key_pem),
    ):
        files[name] = folder / f"server-{name}.pem"
        files[name].write_text(pem)
    with running_entrypoint(
        NUM_WORKERS=str(WORKERS),
        DASKBOX_LISTEN_HOST="127.0.0.1",
        DASKBOX_TLS_CA_FILE=str(files["ca"]),
        DASKBOX_TLS_CERT_FILE=str(files["cert"]),
        DASKBOX_TLS_KEY_FILE=str(files["key"]),
    ) as entrypoint:
        connection = ConnectionFile(
            instance="dashboard-tests",
            target="local",
            scheduler_address=f"tls://127.0.0.1:{entrypoint.scheduler_port}",
            dashboard_url=f"https://127.0.0.1:{entrypoint.dashboard_port}/status",
            image="x",
            lock_hash="0" * 64,
            groups=("main",),
            tls=tls.client,
        )
        path = write_connection_file(folder / ".daskbox" / "dashboard-tests.json", connection)
        entrypoint.wait_for_line(r"Register worker")
        yield entrypoint, path


def read(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode()


def base(url: str) -> str:
    return url.removesuffix("/status")


def test_connect_prints_the_local_url_it_serves_while_the_client_is_open(cluster, capsys):
    _, path = cluster
    client = connect(path=path, check=False)
    try:
        client.wait_for_workers(WORKERS, timeout=60)
        (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("dash")]
        url = line.removeprefix("dashboard: ")
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/status", url)
        assert client.dashboard_link == url
        assert read(f"{base(url)}/health") == "ok"
        # the scheduler's own page, listing the workers this client sees
        page = read(f"{base(url)}/info/main/workers.html")
        workers = client.scheduler_info(n_workers=-1)["workers"]
        assert len(workers) == WORKERS and all(address in page for address in workers)
    finally:
        client.close()
    with pytest.raises(urllib.error.URLError):
        read(f"{base(url)}/health")


def test_invoke_dashboard_serves_until_ctrl_c(cluster):
    _, path = cluster
    with running_dashboard("--path", str(path)) as (port, line):
        assert line.startswith(f"dashboard of dashboard-tests: http://127.0.0.1:{port}/status  ")
        assert "with your client certificate" in line
        assert read(f"http://127.0.0.1:{port}/health") == "ok"


def test_a_taken_local_port_is_named_and_connect_takes_another(cluster):
    _, path = cluster
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = subprocess.run(
            [DASKBOX_CLI, "dashboard", "--path", str(path), "--port", str(port), "--no-browser"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert refused.returncode == 1
        assert refused.stderr.startswith(f"error: port {port} on 127.0.0.1 is in use")
        assert "pass --port N (0 picks a free one)" in refused.stderr
        connection = read_connection_file(path)
        security = security_for(connection)
        with pytest.raises(DashboardPortInUse):
            start_dashboard(connection, security, 1, port)
        forwarder = start_dashboard(connection, security, 1, port, or_any_free=True)
        forwarder.close()
        assert forwarder.port != port


def test_a_cluster_that_is_gone_gets_a_page_saying_so():
    forwarder = DashboardForwarder("127.0.0.1", free_port(), None)
    url = forwarder.start(0)
    try:
        with pytest.raises(urllib.error.HTTPError) as answered:
            read(url)
        assert answered.value.code == 502
        assert (
            answered.value.read()
            .decode()
            .startswith("daskbox: the cluster's dashboard at http://127.0.0.1:")
        )
    finally:
        forwarder.close()


def test_a_browser_sees_the_workers_through_invoke_dashboard_and_nothing_directly(cluster):
    entrypoint, path = cluster
    with running_dashboard("--path", str(path)) as (port, line):
        assert line.startswith("dashboard of dashboard-tests: ")
        # ignore-certificate-errors: what refuses the browser below is its missing client
        # certificate, not the launch's CA it does not know.
        with headless_chromium("--ignore-certificate-errors") as browser:
            page = browser.new_page()
            started = time.perf_counter()
            page.goto(f"http://127.0.0.1:{port}/info/main/workers.html")
            page.wait_for_selector("text=tls://127.0.0.1:")
            print(f"workers page through the forwarder: {time.perf_counter() - started:.2f} s")
            text = page.inner_text("body")
            assert len(set(re.findall(r"tls://127\.0\.0\.1:\d+", text))) >= WORKERS
            with pytest.raises(BrowserError, match=r"net::ERR_"):
                page.goto(f"https://127.0.0.1:{entrypoint.dashboard_port}/status")
