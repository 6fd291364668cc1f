"""Per-launch TLS: a fresh CA each time; both certificates chain to it and only to it."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID

from daskbox.gcloud.tls import make_tls_material


def _cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def test_certificates_chain_to_the_launch_ca():
    material = make_tls_material("daskbox-demo")
    ca = _cert(material.server.ca_pem)
    assert material.client.ca_pem == material.server.ca_pem
    for pem in (material.server.cert_pem, material.client.cert_pem):
        _cert(pem).verify_directly_issued_by(ca)


def test_server_pair_serves_both_roles_client_pair_only_the_client():
    material = make_tls_material("daskbox-demo")
    server_usage = (
        _cert(material.server.cert_pem)
        .extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        .value
    )
    client_usage = (
        _cert(material.client.cert_pem)
        .extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        .value
    )
    assert set(server_usage) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert list(client_usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_every_launch_gets_a_new_ca():
    first, second = make_tls_material("a"), make_tls_material("a")
    assert first.server.ca_pem != second.server.ca_pem
    with pytest.raises(InvalidSignature):
        _cert(first.client.cert_pem).verify_directly_issued_by(_cert(second.server.ca_pem))
