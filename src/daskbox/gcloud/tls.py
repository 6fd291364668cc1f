"""Fresh TLS material for one launch: a private CA, a server and a client certificate.

Every launch gets its own CA, so a client certificate from an old cluster cannot reach a
new one, and nothing secret is ever baked into the image. The server side travels to the
VM in its user-data (or to the local container as a bind mount); the client side goes
into the connection file.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from daskbox.client.connection import ClientTLS

# Longer than any maximum run duration, short enough that a leaked key soon expires.
VALIDITY = datetime.timedelta(days=7)


@dataclass(frozen=True)
class ServerTLS:
    """PEM text the scheduler and workers present (they also trust only this CA)."""

    ca_pem: str
    cert_pem: str
    key_pem: str


@dataclass(frozen=True)
class TLSMaterial:
    """Both halves of one launch's TLS: ``server`` for the cluster, ``client`` for the user."""

    server: ServerTLS
    client: ClientTLS


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "daskbox"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _issue(
    common_name: str,
    usages: list[x509.ObjectIdentifier],
    ca_name: x509.Name,
    ca_key: ec.EllipticCurvePrivateKey,
    now: datetime.datetime,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    # distributed turns hostname checking off (clusters are reached by IP), but a SAN
    # keeps the certificate valid for stricter clients such as browsers on the dashboard.
    names: list[x509.GeneralName] = [
        x509.DNSName(common_name),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def make_tls_material(instance: str) -> TLSMaterial:
    """Create a CA named after ``instance`` and sign one server and one client certificate.

    Distributed's TLS requires both sides to present a certificate from the same CA, so
    the scheduler and workers share the server pair and the user holds the client pair.
    """
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"daskbox CA for {instance}")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    # Workers present the server pair when they dial the scheduler, so it serves both roles.
    server_cert, server_key = _issue(
        "daskbox-scheduler",
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        ca_name,
        ca_key,
        now,
    )
    client_cert, client_key = _issue(
        "daskbox-client", [ExtendedKeyUsageOID.CLIENT_AUTH], ca_name, ca_key, now
    )
    ca_pem = _cert_pem(ca_cert)
    return TLSMaterial(
        server=ServerTLS(ca_pem, _cert_pem(server_cert), _key_pem(server_key)),
        client=ClientTLS(ca_pem, _cert_pem(client_cert), _key_pem(client_key)),
    )
