"""Mutual TLS: scheduler and workers on tls://, clients need a certificate from the given CA."""

from __future__ import annotations

import ssl
import subprocess
import urllib.error
import urllib.request

import pytest
from distributed import Client
from distributed.security import Security

from .certs import make_authority
from .cluster import running_entrypoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def authorities(tmp_path_factory):
    ours = make_authority(tmp_path_factory.mktemp("ours"), "daskbox test CA")
    foreign = make_authority(tmp_path_factory.mktemp("foreign"), "someone else's CA")
    return ours, foreign


@pytest.fixture(scope="module")
def tls_cluster(authorities):
    (server, _), _ = authorities
    with running_entrypoint(
        NUM_WORKERS="2",
        DASKBOX_TLS_CA_FILE=str(server.ca_file),
        DASKBOX_TLS_CERT_FILE=str(server.cert_file),
        DASKBOX_TLS_KEY_FILE=str(server.key_file),
    ) as entrypoint:
        yield entrypoint


def client_security(ca_file, cert_file, key_file) -> Security:
    return Security(
        tls_ca_file=str(ca_file),
        tls_client_cert=str(cert_file),
        tls_client_key=str(key_file),
        require_encryption=True,
    )


def test_mutual_tls_client_computes_on_tls_workers(tls_cluster, authorities):
    (_, client_files), _ = authorities
    security = client_security(client_files.ca_file, client_files.cert_file, client_files.key_file)
    with Client(
        f"tls://127.0.0.1:{tls_cluster.scheduler_port}", security=security, timeout=30
    ) as client:
        client.wait_for_workers(2, timeout=30)
        info = client.scheduler_info(n_workers=-1)
        assert info["address"].startswith("tls://")
        assert all(address.startswith("tls://") for address in info["workers"])
        assert client.submit(sum, [1, 2, 3]).result(timeout=30) == 6


def test_plain_tcp_client_is_refused(tls_cluster):
    with pytest.raises((OSError, TimeoutError)):
        Client(f"tcp://127.0.0.1:{tls_cluster.scheduler_port}", timeout=5)
    tls_cluster.wait_for_line(r"^scheduler \| .*TLS handshake failed .*WRONG_VERSION_NUMBER")


def test_client_with_a_foreign_certificate_is_refused(tls_cluster, authorities):
    (_, ours), (_, foreign) = authorities
    # Trusts our CA for the server, but presents a certificate signed by another CA.
    security = client_security(ours.ca_file, foreign.cert_file, foreign.key_file)
    # TLS 1.3 checks the client's certificate after the client's side of the handshake,
    # so the client sees either the alert or a closed connection; the server says why.
    with pytest.raises((OSError, TimeoutError)):
        Client(f"tls://127.0.0.1:{tls_cluster.scheduler_port}", security=security, timeout=5)
    tls_cluster.wait_for_line(r"^scheduler \| .*TLS handshake failed .*CERTIFICATE_VERIFY_FAILED")


def https_context(ca_file, cert_file=None, key_file=None) -> ssl.SSLContext:
    """A browser-like HTTPS client that trusts ``ca_file``, with a client certificate if given."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.check_hostname = False  # the certificate names the role, not 127.0.0.1's name
    if cert_file is not None:
        context.load_cert_chain(str(cert_file), str(key_file))
    return context


def get(port: int, path: str, context: ssl.SSLContext) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(
            f"https://127.0.0.1:{port}{path}", context=context, timeout=30
        ) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_dashboard_serves_the_launchs_clients_over_https(tls_cluster, authorities):
    (server, client_files), _ = authorities
    ours = https_context(server.ca_file, client_files.cert_file, client_files.key_file)
    assert get(tls_cluster.dashboard_port, "/health", ours) == (200, b"ok")
    # the server's certificate is the one our CA signed: another CA does not accept it
    _, (foreign, _) = authorities
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        get(
            tls_cluster.dashboard_port,
            "/health",
            https_context(foreign.ca_file, client_files.cert_file, client_files.key_file),
        )


@pytest.mark.parametrize("client", ["none", "foreign"])
def test_dashboard_refuses_a_browser_without_the_launchs_client_certificate(
    tls_cluster, authorities, client
):
    (server, ours), (_, foreign_client) = authorities
    if client == "none":
        context = https_context(server.ca_file)
    else:
        context = https_context(server.ca_file, foreign_client.cert_file, foreign_client.key_file)
    # TLS 1.3 checks the client's certificate after the client's side of the handshake,
    # so the client sees the alert (or a closed connection) when it reads the answer.
    with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
        get(tls_cluster.dashboard_port, "/status", context)
    curl = [
        "curl",
        "--silent",
        "--show-error",
        "--max-time",
        "30",
        "--cacert",
        str(server.ca_file),
        f"https://127.0.0.1:{tls_cluster.dashboard_port}/health",
    ]
    presented = (
        []
        if client == "none"
        else [
            "--cert",
            str(foreign_client.cert_file),
            "--key",
            str(foreign_client.key_file),
        ]
    )
    refused = subprocess.run([*curl, *presented], capture_output=True, text=True, check=False)
    # 35 handshake failed; 55/56 the server's alert or close came when sending or receiving
    assert refused.returncode in {35, 55, 56} and refused.stdout == "", refused
    # The same curl with the launch's client certificate is answered.
    answered = subprocess.run(
        [*curl, "--cert", str(ours.cert_file), "--key", str(ours.key_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (answered.returncode, answered.stdout) == (0, "ok"), answered.stderr
    # and plain HTTP is not served
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(f"http://127.0.0.1:{tls_cluster.dashboard_port}/health", timeout=30)


def test_a_plain_get_of_the_eventstream_does_not_flood_the_scheduler_log(tls_cluster, authorities):
    (server, client_files), _ = authorities
    ours = https_context(server.ca_file, client_files.cert_file, client_files.key_file)
    status, _ = get(tls_cluster.dashboard_port, "/eventstream", ours)
    assert status == 400  # not a websocket upgrade
    security = client_security(client_files.ca_file, client_files.cert_file, client_files.key_file)
    for _ in range(3):  # each client's arrival and departure is a scheduler event
        with Client(
            f"tls://127.0.0.1:{tls_cluster.scheduler_port}", security=security, timeout=30
        ) as client:
            client.wait_for_workers(2, timeout=30)
            assert client.submit(sum, [1, 2]).result(timeout=30) == 3
    tls_cluster.wait_for_line(r"Remove client")
    assert not [
        line for line in tls_cluster.lines if "WebSocketClosedError" in line or "Traceback" in line
    ]
