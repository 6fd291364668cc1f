"""Fresh TLS material for one launch: a private CA, a server and a client certificate.

Every launch gets its own CA, so a client certificate from an old cluster cannot reach a
new one, and nothing secret is ever baked into the image. The server side travels to the
VM in its user-data (or to the local container as a bind mount); the client side goes
into the connection file.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from daskbox.client.connection import ClientTLS

# A VM with a maximum run duration is deleted by then; the certificates outlive it by a
# margin (clock skew, a slow boot) and no more, so a leaked key soon expires.
VALIDITY_MARGIN = datetime.timedelta(days=1)
# No maximum run duration (``0``) or the local target: the cluster lives until teardown,
# so the certificates must too; a year, after which a relaunch issues new ones.
LONG_VALIDITY = datetime.timedelta(days=365)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> datetime.timedelta | None:
    """``"8h"``, ``"1d12h"``, ``"90m"`` -> timedelta; ``""``/``"0"`` -> None (no limit).

    The same grammar as gcloud's ``--max-run-duration`` (settings validate it first).
    """
    if text in {"", "0"}:
        return None
    total = datetime.timedelta()
    for number, unit in re.findall(r"([0-9]+)([smhd])", text):
        total += datetime.timedelta(**{_UNITS[unit]: int(number)})
    return total


def certificate_validity(max_run_duration: str | None) -> datetime.timedelta:
    """How long this launch's certificates must stay valid: the VM's maximum run
    duration plus a margin, or ``LONG_VALIDITY`` when nothing deletes the cluster."""
    duration = parse_duration(max_run_duration or "")
    return LONG_VALIDITY if duration is None else duration + VALIDITY_MARGIN


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
    valid_for: datetime.timedelta,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    # Trust comes from the per-launch CA on both sides; distributed does not check host
    # names (its TLS contexts set check_hostname=False), and the VM's IP is unknown when
    # the certificates are issued. The SAN only names the role, plus loopback for the local
    # target. The entrypoint serves the dashboard over HTTPS with the server certificate:
    # a browser trusts it once the launch's CA (in the connection file) is imported.
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
        .not_valid_after(now + valid_for)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def make_tls_material(instance: str, valid_for: datetime.timedelta = LONG_VALIDITY) -> TLSMaterial:
    """Create a CA named after ``instance`` and sign one server and one client certificate,
    all valid for ``valid_for`` (see ``certificate_validity``).

    Distributed's TLS requires both sides to present a certificate from the same CA, so
    the scheduler and workers share the server pair and the user holds the client pair.
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"daskbox CA for {instance}")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + valid_for)
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
        valid_for,
    )
    client_cert, client_key = _issue(
        "daskbox-client", [ExtendedKeyUsageOID.CLIENT_AUTH], ca_name, ca_key, now, valid_for
    )
    ca_pem = _cert_pem(ca_cert)
    return TLSMaterial(
        server=ServerTLS(ca_pem, _cert_pem(server_cert), _key_pem(server_key)),
        client=ClientTLS(ca_pem, _cert_pem(client_cert), _key_pem(client_key)),
    )
