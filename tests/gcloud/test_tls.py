"""Per-launch TLS: a fresh CA each time; both certificates chain to it and only to it."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID

from daskbox.gcloud.tls import (
    LONG_VALIDITY,
    VALIDITY_MARGIN,
    certificate_validity,
    make_tls_material,
)


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


@pytest.mark.parametrize(
    ("max_run_duration", "expected"),
    [
        ("8h", datetime.timedelta(hours=8) + VALIDITY_MARGIN),
        ("30d", datetime.timedelta(days=30) + VALIDITY_MARGIN),
        ("1d12h30m", datetime.timedelta(days=1, hours=12, minutes=30) + VALIDITY_MARGIN),
        ("0", LONG_VALIDITY),
        ("", LONG_VALIDITY),
        (None, LONG_VALIDITY),
    ],
)
def test_validity_covers_the_maximum_run_duration(max_run_duration, expected):
    assert certificate_validity(max_run_duration) == expected


@pytest.mark.parametrize("max_run_duration", ["30d", "0"])
def test_certificates_outlive_the_vm(max_run_duration):
    """A 30-day VM (or one never deleted) keeps working TLS until it is gone."""
    validity = certificate_validity(max_run_duration)
    material = make_tls_material("daskbox-demo", validity)
    now = datetime.datetime.now(datetime.timezone.utc)
    for pem in (material.server.ca_pem, material.server.cert_pem, material.client.cert_pem):
        expires = _cert(pem).not_valid_after_utc
        assert expires >= now + validity - datetime.timedelta(minutes=1)
        assert expires <= now + validity + datetime.timedelta(minutes=1)
    assert _cert(material.server.cert_pem).not_valid_after_utc > now + datetime.timedelta(days=30)
