"""TLS for one launch, with every private key made on the machine that uses it.

Two certificate authorities per launch, each holding only what its side needs:

* **The client CA** is made here, signs this laptop's client certificate (client
  authentication only) and is thrown away: its private key is never written anywhere, so
  nothing can issue another client certificate. Its certificate is public and travels to
  the cluster (instance metadata, or the local container's mount) as the one CA whose
  clients the scheduler and workers accept.
* **The cluster CA** is made where the cluster runs. On a VM, ``node_tls`` makes it at
  boot, with the node key the scheduler and workers present; the CA key stays in a
  root-only folder of the VM and its certificate is published as a guest attribute, which
  launch reads and pins (``pin_cluster_ca``). For the local target the cluster runs on
  this machine, so ``make_local_cluster`` makes the same material here.

Distributed gives each role one certificate that it presents both when it listens and
when it dials (``Security.get_listen_args``/``get_connection_args`` read the same
``tls_<role>_cert``), and OpenSSL checks the extended key usage for the direction:
``serverAuth`` for the side that listens, ``clientAuth`` for the side that dials. The
scheduler listens (clients, workers) and dials workers (gathers, ``client.run``); workers
listen (peers, the scheduler) and dial the scheduler and their peers. So the node
certificate must allow both, which is safe only because its key never leaves the machine.
The laptop's client certificate allows ``clientAuth`` alone, so it cannot serve as a
scheduler, and no certificate obtainable from the project (instance metadata, guest
attributes, the image) comes with a private key.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import math
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from daskbox.client.connection import ClientTLS
from daskbox.errors import GcloudError
from daskbox.gcloud.node_tls import ca_common_name

# A VM with a maximum run duration is deleted by then; the certificates outlive it by a
# margin (clock skew, a slow boot) and no more, so a leaked key soon expires.
VALIDITY_MARGIN = datetime.timedelta(days=1)
# No maximum run duration or the local target: the cluster lives until teardown, so the
# certificates must too; a year, after which a relaunch issues new ones.
LONG_VALIDITY = datetime.timedelta(days=365)
NODE_NAME = "daskbox-node"
CLIENT_NAME = "daskbox-client"


def certificate_validity(max_run_seconds: int | None) -> datetime.timedelta:
    """How long this launch's certificates must stay valid: the VM's maximum run
    duration plus a margin, or ``LONG_VALIDITY`` when nothing deletes the cluster."""
    if max_run_seconds is None:
        return LONG_VALIDITY
    return datetime.timedelta(seconds=max_run_seconds) + VALIDITY_MARGIN


def validity_days(validity: datetime.timedelta) -> int:
    """Whole days for ``openssl -days`` on the VM (rounded up, never shorter)."""
    return max(1, math.ceil(validity / datetime.timedelta(days=1)))


@dataclass(frozen=True)
class ServerTLS:
    """The files the scheduler and workers read: the trust bundle (cluster CA and client CA),
    the node certificate and its key."""

    ca_pem: str
    cert_pem: str
    key_pem: str


@dataclass(frozen=True)
class LaunchTLS:
    """This launch's laptop side: the client CA's certificate (public, for the cluster)
    and the client's credentials (``client.ca_pem`` stays empty until the cluster CA is
    pinned)."""

    client_ca_pem: str
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


def _key_usage(*, certificate_authority: bool) -> x509.KeyUsage:
    """A CA signs certificates only; a leaf (EC key) signs its TLS handshakes only."""
    return x509.KeyUsage(
        digital_signature=not certificate_authority,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=certificate_authority,
        crl_sign=certificate_authority,
        encipher_only=False,
        decipher_only=False,
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _ca(
    common_name: str, valid_for: datetime.timedelta
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + valid_for)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(certificate_authority=True), critical=True)
        # Key identifiers: Python 3.13's default TLS context verifies strictly (RFC 5280).
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    common_name: str,
    usages: list[x509.ObjectIdentifier],
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    valid_for: datetime.timedelta,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    # Trust comes from the CAs on both sides; distributed does not check host names (its
    # TLS contexts set check_hostname=False). The SAN names the role, plus loopback.
    names: list[x509.GeneralName] = [
        x509.DNSName(common_name),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + valid_for)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(certificate_authority=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def make_launch_tls(instance: str, valid_for: datetime.timedelta = LONG_VALIDITY) -> LaunchTLS:
    """A client CA for ``instance`` that signs one client certificate and is then dropped."""
    ca_cert, ca_key = _ca(ca_common_name("client", instance), valid_for)
    cert, key = _leaf(CLIENT_NAME, [ExtendedKeyUsageOID.CLIENT_AUTH], ca_cert, ca_key, valid_for)
    # ca_key goes out of scope here: no further client certificate can ever be signed.
    return LaunchTLS(
        client_ca_pem=_cert_pem(ca_cert),
        client=ClientTLS(ca_pem="", cert_pem=_cert_pem(cert), key_pem=_key_pem(key)),
    )


@dataclass(frozen=True)
class TLSMaterial:
    """Both sides of a cluster that runs on this machine: ``server`` for the cluster,
    ``client`` (pinned to the cluster CA) for the user."""

    server: ServerTLS
    client: ClientTLS


def make_tls_material(instance: str, valid_for: datetime.timedelta = LONG_VALIDITY) -> TLSMaterial:
    """Everything for a cluster on this machine (the local target, or a test's cluster):
    a client CA with its client pair, and a cluster CA with its node pair."""
    return make_local_cluster(instance, make_launch_tls(instance, valid_for), valid_for)


def make_local_cluster(
    instance: str, launch: LaunchTLS, valid_for: datetime.timedelta = LONG_VALIDITY
) -> TLSMaterial:
    """The cluster CA and node pair for a cluster on this machine (the local target), and
    the client's credentials pinned to that CA."""
    ca_cert, ca_key = _ca(ca_common_name("cluster", instance), valid_for)
    cert, key = _leaf(
        NODE_NAME,
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        ca_cert,
        ca_key,
        valid_for,
    )
    cluster_ca = _cert_pem(ca_cert)
    server = ServerTLS(cluster_ca + launch.client_ca_pem, _cert_pem(cert), _key_pem(key))
    return TLSMaterial(server, pin_cluster_ca(launch.client, cluster_ca))


def pin_cluster_ca(client: ClientTLS, cluster_ca_pem: str) -> ClientTLS:
    """The client's credentials trusting exactly ``cluster_ca_pem``, after checking it is a
    single CA certificate that is valid now (a guest attribute is only text)."""
    try:
        certs = x509.load_pem_x509_certificates(cluster_ca_pem.encode())
    except ValueError:
        certs = []
    if len(certs) != 1:
        raise GcloudError(
            "the cluster published no single PEM certificate as its CA: relaunch "
            "(`invoke teardown`, `invoke launch`)"
        )
    [cert] = certs
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    now = _now()
    if constraints is None or not constraints.ca:
        raise GcloudError("the cluster published a certificate that is not a CA: relaunch")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise GcloudError(
            "the cluster's CA certificate is not valid now (check the clock): relaunch"
        )
    return dataclasses.replace(client, ca_pem=_cert_pem(cert))
