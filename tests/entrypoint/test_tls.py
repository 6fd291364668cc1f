"""Mutual TLS: scheduler and workers on tls://, clients need a certificate from the given CA."""

from __future__ import annotations

import ssl
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


def test_dashboard_is_served_over_https_with_the_server_certificate(tls_cluster, authorities):
    (server, _), (foreign, _) = authorities
    port = tls_cluster.dashboard_port
    trusts_our_ca = ssl.create_default_context(cafile=str(server.ca_file))
    with urllib.request.urlopen(
        f"https://127.0.0.1:{port}/health", context=trusts_our_ca, timeout=30
    ) as response:
        assert response.read() == b"ok"
    # the certificate really is the one our CA signed: another CA does not accept it
    trusts_another_ca = ssl.create_default_context(cafile=str(foreign.ca_file))
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(
            f"https://127.0.0.1:{port}/health", context=trusts_another_ca, timeout=30
        )
    # and plain HTTP is not served
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=30)
