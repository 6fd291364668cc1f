"""TLS per launch: a client CA whose key is dropped, a cluster CA made where the cluster
runs (here for the local target; on the VM by node_tls.sh, run with this host's openssl),
and the extended key usages each side really needs."""

from __future__ import annotations

import datetime
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from specs import fixed_spec

from daskbox.errors import GcloudError
from daskbox.gcloud.cloud_init import node_tls_argv
from daskbox.gcloud.node_tls import NODE_TLS_SCRIPT
from daskbox.gcloud.tls import (
    LONG_VALIDITY,
    VALIDITY_MARGIN,
    certificate_validity,
    make_launch_tls,
    make_local_cluster,
    make_tls_material,
    pin_cluster_ca,
    validity_days,
)


def _cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def _usages(pem: str) -> set[x509.ObjectIdentifier]:
    return set(_cert(pem).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_client_certificate_is_for_client_authentication_only():
    launch = make_launch_tls("daskbox-demo")
    _cert(launch.client.cert_pem).verify_directly_issued_by(_cert(launch.client_ca_pem))
    assert _usages(launch.client.cert_pem) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    assert launch.client.ca_pem == ""  # nothing trusted until the cluster CA is pinned


def test_node_certificate_listens_and_dials_under_the_cluster_ca():
    launch = make_launch_tls("daskbox-demo")
    material = make_local_cluster("daskbox-demo", launch)
    server, client = material.server, material.client
    cluster_ca = _cert(client.ca_pem)
    _cert(server.cert_pem).verify_directly_issued_by(cluster_ca)
    assert _usages(server.cert_pem) == {
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    }
    # The cluster trusts its own CA (workers) and the client CA (the laptop), nothing else.
    bundle = x509.load_pem_x509_certificates(server.ca_pem.encode())
    assert [c.subject for c in bundle] == [cluster_ca.subject, _cert(launch.client_ca_pem).subject]


def test_every_launch_gets_new_authorities():
    first, second = make_launch_tls("a"), make_launch_tls("a")
    assert first.client_ca_pem != second.client_ca_pem
    with pytest.raises(InvalidSignature):
        _cert(first.client.cert_pem).verify_directly_issued_by(_cert(second.client_ca_pem))


def test_pinning_accepts_one_ca_certificate_only():
    launch = make_launch_tls("x")
    client = make_local_cluster("x", launch).client
    assert pin_cluster_ca(launch.client, client.ca_pem).ca_pem == client.ca_pem
    for bad in ("", "not a certificate", launch.client.cert_pem, client.ca_pem * 2):
        with pytest.raises(GcloudError, match="relaunch"):
            pin_cluster_ca(launch.client, bad)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl CLI on this host")
def test_strict_verification_accepts_the_chains(tmp_path):
    """Python 3.13 verifies RFC 5280 strictly (key identifiers, critical constraints), as
    ``openssl verify -x509_strict`` does: both chains pass it."""
    launch = make_launch_tls("x")
    material = make_local_cluster("x", launch)
    server, client = material.server, material.client
    for ca, cert in ((client.ca_pem, server.cert_pem), (launch.client_ca_pem, client.cert_pem)):
        (tmp_path / "ca.pem").write_text(ca)
        (tmp_path / "cert.pem").write_text(cert)
        result = subprocess.run(
            [
                "openssl",
                "verify",
                "-x509_strict",
                "-CAfile",
                str(tmp_path / "ca.pem"),
                str(tmp_path / "cert.pem"),
            ],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (8 * 3600, datetime.timedelta(hours=8) + VALIDITY_MARGIN),
        (30 * 86400, datetime.timedelta(days=30) + VALIDITY_MARGIN),
        (None, LONG_VALIDITY),
    ],
)
def test_validity_covers_the_maximum_run_duration(seconds, expected):
    assert certificate_validity(seconds) == expected


@pytest.mark.parametrize(
    ("validity", "days"),
    [(datetime.timedelta(hours=32), 2), (datetime.timedelta(days=2), 2), (LONG_VALIDITY, 365)],
)
def test_vm_certificates_get_whole_days_never_fewer(validity, days):
    assert validity_days(validity) == days


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _common_name(pem: str) -> str:
    [attribute] = _cert(pem).subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(attribute.value)


MAX_COMMON_NAME = 64  # RFC 5280's ub-common-name
# Valid Compute Engine names: 42 characters was the longest that fit "daskbox client CA for ".
LONG_NAMES = ["a" * 41, "a" * 42, "a" * 43, "daskbox-" + "x" * 55, "b" * 63]


@pytest.mark.parametrize("instance", LONG_NAMES, ids=len)
def test_long_instance_names_fit_the_certificates(instance):
    """The issue's crash: a 43-63 character instance name overflowed X.509's 64-character
    common name. The CA names stay within it and keep the name's start."""
    material = make_tls_material(instance)
    client_ca, cluster_ca = material.server.ca_pem, material.client.ca_pem
    bundle = x509.load_pem_x509_certificates(client_ca.encode())
    names = [_common_name(cluster_ca), _common_name(_cert_pem(bundle[1]))]
    assert all(len(name) <= MAX_COMMON_NAME for name in names), names
    assert names[0].startswith(f"daskbox cluster CA for {instance[:30]}")
    assert names[1].startswith(f"daskbox client CA for {instance[:30]}")
    _cert(material.server.cert_pem).verify_directly_issued_by(_cert(cluster_ca))


def test_two_long_names_with_one_prefix_get_different_ca_names():
    first, second = "a" * 62 + "b", "a" * 62 + "c"
    names = {_common_name(make_launch_tls(name).client_ca_pem) for name in (first, second)}
    assert len(names) == 2


def _node_tls(
    folder: Path, client_ca: str, days: int = 2, instance: str = "daskbox-demo"
) -> subprocess.CompletedProcess[str]:
    script = folder / "node-tls.sh"
    script.write_text(NODE_TLS_SCRIPT)
    (folder / "client-ca.pem").write_text(client_ca)
    argv = [
        "sh",
        str(script),
        str(folder / "state"),
        str(folder / "tls"),
        str(folder / "client-ca.pem"),
        str(days),
        "10001",
        instance,
    ]
    return subprocess.run(argv, capture_output=True, text=True)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl CLI on this host")
def test_vm_script_takes_a_63_character_instance_name(tmp_path):
    """The VM's openssl gets the same limit: the unit passes it the name the CA can hold."""
    spec = fixed_spec(instance="c" * 63)
    made = _node_tls(
        tmp_path, make_launch_tls(spec.instance).client_ca_pem, instance=node_tls_argv(spec)[-1]
    )
    assert made.returncode == 0, made.stderr
    cluster_ca = (tmp_path / "tls" / "cluster-ca.pem").read_text()
    assert _common_name(cluster_ca).startswith("daskbox cluster CA for " + "c" * 30)
    assert len(_common_name(cluster_ca)) <= MAX_COMMON_NAME


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl CLI on this host")
def test_vm_script_makes_its_own_ca_and_node_pair_once(tmp_path):
    """What the VM runs at boot, run here: the node pair chains to a CA made on the spot,
    the trust bundle holds that CA and the client CA, a second run changes nothing."""
    launch = make_launch_tls("daskbox-demo")
    first = _node_tls(tmp_path, launch.client_ca_pem)
    assert first.returncode == 0, first.stderr
    tls = tmp_path / "tls"
    cluster_ca = (tls / "cluster-ca.pem").read_text()
    node = (tls / "server.pem").read_text()
    _cert(node).verify_directly_issued_by(_cert(cluster_ca))
    assert _usages(node) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert (tls / "ca.pem").read_text() == cluster_ca + launch.client_ca_pem
    assert (tls / "server-key.pem").stat().st_uid == 10001
    assert oct((tls / "server-key.pem").stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "state").stat().st_mode & 0o777) == "0o700"
    assert not (tls / "ca-key.pem").exists() and (tmp_path / "state" / "ca-key.pem").exists()
    expires = _cert(node).not_valid_after_utc
    assert expires - datetime.datetime.now(datetime.timezone.utc) > datetime.timedelta(days=1)

    second = _node_tls(tmp_path, launch.client_ca_pem)
    assert second.returncode == 0, second.stderr
    assert (tls / "cluster-ca.pem").read_text() == cluster_ca  # a reboot keeps the pin valid
    assert (tls / "server.pem").read_text() == node
    pin_cluster_ca(launch.client, cluster_ca)  # what launch accepts from the guest attribute
