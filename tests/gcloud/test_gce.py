"""Compute Engine end to end: the real gcloud CLI against the emulator, whose VM boots the
real user-data on Container-Optimized OS's model, pulls the image from a real registry and
runs real Dask processes in Docker."""

from __future__ import annotations

import json
import operator
import re
import stat
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from distributed import Client

from conftest import daskbox
from daskbox.client.connection import ClientTLS, connection_path, read_connection_file
from daskbox.contract import IMAGE_UID

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CALLER = "203.0.113.7/32"


def _pyproject(project) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads((project / "pyproject.toml").read_text())


def _settings(project) -> dict:
    return _pyproject(project)["tool"]["daskbox"]["gcloud"]


def _gcloud(env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["gcloud", *args], env=env, capture_output=True, text=True, check=False)


def _launch(project, env, image, *extra: str) -> subprocess.CompletedProcess[str]:
    return daskbox(project, env, "launch", "--image", image, "--source-range", CALLER, *extra)


def _compute(connection) -> int:
    with Client(connection.scheduler_address, security=connection.tls.security(), timeout=30) as c:
        return int(c.submit(operator.add, 20, 22).result())


def test_launch_connect_compute_teardown(project, vm_image, emulator, gcloud_env):
    instance = _settings(project)["instance"]
    launched = _launch(project, gcloud_env, vm_image.reference, "--spot")
    try:
        assert f"$ gcloud compute instances create {instance}" in launched.stdout
        assert f"$ gcloud compute firewall-rules create {instance}-ipv4" in launched.stdout
        path = connection_path(project, instance)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        connection = read_connection_file(path)
        assert connection.state == "ready"
        assert (
            connection.scheduler_address
            == f"tls://127.0.0.1:{_settings(project)['scheduler-port']}"
        )
        assert connection.image == vm_image.pinned
        assert connection.firewall_rules == (f"{instance}-ipv4",)
        assert launched.stdout.rstrip().endswith(
            f'    from daskbox import connect\n    client = connect("{instance}")'
        )

        # The VM made its own keys: the node key belongs to the image's user, the cluster
        # CA key stays root-only in a folder the container never sees.
        vm = emulator.vm(instance)
        key = (vm.root / "var/lib/daskbox/tls/server-key.pem").stat()
        assert (key.st_uid, stat.S_IMODE(key.st_mode)) == (IMAGE_UID, 0o600)
        ca_dir = vm.root / "var/lib/daskbox/ca"
        assert stat.S_IMODE(ca_dir.stat().st_mode) == 0o700
        assert (ca_dir / "ca-key.pem").exists()
        # The laptop pinned exactly the CA the VM published.
        published = vm.guest_attributes[("daskbox", "cluster-ca")]
        assert connection.tls.ca_pem.strip() == published.strip()

        # What gcloud sent: the recorded request bodies.
        [body] = emulator.bodies("POST", r"zones/us-central1-a/instances$")
        assert body["machineType"].endswith("/zones/us-central1-a/machineTypes/e2-highcpu-16")
        assert "cos-stable" in body["disks"][0]["initializeParams"]["sourceImage"]
        assert body["scheduling"]["provisioningModel"] == "SPOT"
        assert body["scheduling"]["maxRunDuration"] == {"seconds": str(8 * 3600)}
        assert body["labels"]["daskbox"] == "managed"
        assert body["labels"]["daskbox-project"] == _pyproject(project)["project"]["name"]
        assert sorted(body["tags"]["items"]) == sorted(["daskbox", instance])
        [rule] = emulator.bodies("POST", r"global/firewalls$")
        assert rule["sourceRanges"] == [CALLER] and rule["targetTags"] == [instance]

        assert _compute(connection) == 42
        status = daskbox(project, gcloud_env, "status")
        assert instance in status.stdout and "RUNNING" in status.stdout
    finally:
        down = daskbox(project, gcloud_env, "teardown", check=False)
    assert down.returncode == 0, down.stderr
    assert emulator.instances == {} and emulator.firewalls == {}
    assert emulator.containers() == []
    assert not connection_path(project, instance).exists()
    assert "nothing to delete" in daskbox(project, gcloud_env, "teardown").stdout


def _private_keys(text: str) -> list[str]:
    return re.findall(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", text)


def test_no_private_key_leaves_its_machine(project, vm_image, emulator, gcloud_env, tmp_path):
    """After a launch, what anyone with read access to the project can get (the instance
    description with its metadata, the guest attributes, the serial port) and every file
    under gcloud's configuration folder hold no private key."""
    instance = _settings(project)["instance"]
    _launch(project, gcloud_env, vm_image.reference)
    try:
        where = ("--zone", "us-central1-a")
        described = _gcloud(
            gcloud_env, "compute", "instances", "describe", instance, *where, "--format", "json"
        )
        assert described.returncode == 0, described.stderr
        metadata = {i["key"]: i["value"] for i in json.loads(described.stdout)["metadata"]["items"]}
        assert set(metadata) == {"user-data", "enable-guest-attributes"}
        assert "-----BEGIN CERTIFICATE-----" in metadata["user-data"]  # the client CA: public
        guest = _gcloud(
            gcloud_env,
            "compute",
            "instances",
            "get-guest-attributes",
            instance,
            *where,
            "--format",
            "json",
        )
        serial = _gcloud(
            gcloud_env, "compute", "instances", "get-serial-port-output", instance, *where
        )
        for output in (described, guest, serial):
            assert output.returncode == 0, output.stderr
            assert _private_keys(output.stdout + output.stderr) == []
        config = Path(gcloud_env["CLOUDSDK_CONFIG"])
        files = [path for path in config.rglob("*") if path.is_file()]
        assert files, "gcloud wrote its configuration and logs here"
        for path in files:
            assert _private_keys(path.read_text(errors="replace")) == [], path
        # The one private key on this side: the client's, in the 0600 connection file.
        connection = read_connection_file(connection_path(project, instance))
        assert len(_private_keys(connection_path(project, instance).read_text())) == 1
        _nothing_obtainable_connects(connection, described.stdout, guest.stdout, tmp_path)
        assert _compute(connection) == 42  # and the laptop's own client still works
    finally:
        daskbox(project, gcloud_env, "teardown", check=False)


def _pem_certificates(text: str) -> list[x509.Certificate]:
    found = re.findall(r"-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----", text)
    return [x509.load_pem_x509_certificate(pem.replace("\\n", "\n").encode()) for pem in found]


def _self_made(subject: x509.Name, issuer_name: x509.Name, *, ca: bool) -> tuple[str, str]:
    """A certificate an attacker can make: any names, signed by a key of their own."""
    import datetime

    from cryptography.hazmat.primitives import serialization

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return pem, key_pem


def _refused(address: str, tls: ClientTLS | None) -> bool:
    try:
        security = tls.security() if tls is not None else None
        with Client(address, security=security, timeout=4) as client:
            client.submit(operator.add, 1, 1).result(timeout=4)
    except (OSError, TimeoutError, ValueError):
        return True
    return False


def _nothing_obtainable_connects(connection, described: str, guest: str, folder: Path) -> None:
    """Every certificate the project hands out, with a key anyone can make, and lookalikes
    of each, fail at the TLS handshake; so do plain TCP and TLS without a certificate."""
    from cryptography.hazmat.primitives import serialization

    public = _pem_certificates(described) + _pem_certificates(guest)
    names = {cert.subject.rfc4514_string() for cert in public}
    assert any("client CA" in name for name in names) and any(
        "cluster CA" in name for name in names
    )
    cluster_ca = connection.tls.ca_pem
    attempts: list[ClientTLS] = []
    for cert in public:
        pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        _, stranger_key = _self_made(cert.subject, cert.subject, ca=False)
        attempts.append(ClientTLS(cluster_ca, pem, stranger_key))  # their cert, a key of ours
        # A lookalike: the same subject and issuer names, our own key and signature.
        lookalike, key = _self_made(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "daskbox-client")]),
            cert.subject,
            ca=False,
        )
        attempts.append(ClientTLS(cluster_ca, lookalike, key))
        forged_ca, forged_key = _self_made(cert.subject, cert.subject, ca=True)
        attempts.append(ClientTLS(cluster_ca, forged_ca, forged_key))
    address = connection.scheduler_address
    for attempt in attempts:
        try:
            refused = _refused(address, attempt)
        except ValueError:  # a certificate that does not match its key never gets sent
            refused = True
        assert refused, attempt.cert_pem[:80]
    assert _refused(address.replace("tls://", "tcp://"), None)
    assert folder.exists()


def test_a_reboot_brings_back_the_same_cluster(project, vm_image, emulator, gcloud_env):
    """stop + start and reset run the user-data again on COS's stateless /etc: the stale
    container is removed, the same cluster CA comes back (the laptop's pin still holds) and
    the exit of the previous boot's container does not power the VM off."""
    instance = _settings(project)["instance"]
    _launch(project, gcloud_env, vm_image.reference)
    try:
        connection = read_connection_file(connection_path(project, instance))
        vm = emulator.vm(instance)
        where = ("--zone", "us-central1-a")
        for verbs in (("stop", "start"), ("reset",)):
            for verb in verbs:
                result = _gcloud(gcloud_env, "compute", "instances", verb, instance, *where)
                assert result.returncode == 0, result.stderr
            boots = vm.boots
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                try:
                    assert _compute(connection) == 42
                    break
                except OSError:
                    time.sleep(1)
            else:
                pytest.fail(f"the cluster did not come back after {verbs}:\n{vm.serial_output()}")
            assert vm.boots == boots
            # The CA, and the boot's report beside it: the cluster runs again.
            published = dict(vm.guest_attributes)
            assert {namespace for namespace, _ in published} == {"daskbox"}
            assert published[("daskbox", "cluster-ca")].strip() == connection.tls.ca_pem.strip()
            assert published[("daskbox", "boot-step")] == "cluster"
            assert (
                emulator.instances[("test-project", "us-central1-a", instance)].resource["status"]
                == "RUNNING"
            )
        assert vm.boots == 3
        assert "powering off" not in vm.serial_output()
    finally:
        daskbox(project, gcloud_env, "teardown", check=False)
    assert emulator.containers() == []


def test_idle_vm_powers_off_and_a_restart_runs_the_cluster_again(
    project, vm_image, emulator, gcloud_env
):
    """The entrypoint exits 0 after its idle timeout and systemd powers the VM off; started
    again, the VM runs the cluster again instead of powering off at once."""
    instance = _settings(project)["instance"]
    _launch(project, gcloud_env, vm_image.reference, "--idle-timeout", "15s")
    try:
        key = ("test-project", "us-central1-a", instance)
        resource = emulator.instances[key].resource
        deadline = time.monotonic() + 90
        while resource["status"] != "TERMINATED" and time.monotonic() < deadline:
            time.sleep(0.5)
        status = daskbox(project, gcloud_env, "status")
        line = next(line for line in status.stdout.splitlines() if line.startswith(instance))
        assert "TERMINATED" in line
        started = _gcloud(
            gcloud_env, "compute", "instances", "start", instance, "--zone", "us-central1-a"
        )
        assert started.returncode == 0, started.stderr
        connection = read_connection_file(connection_path(project, instance))
        deadline = time.monotonic() + 60
        answered = False
        while not answered and time.monotonic() < deadline:
            try:
                answered = _compute(connection) == 42
            except OSError:
                time.sleep(0.5)
        assert answered, emulator.vm(instance).serial_output()
    finally:
        daskbox(project, gcloud_env, "teardown", check=False)
    assert emulator.containers() == []


def test_bad_settings_on_the_vm_are_not_restarted(project, vm_image, emulator, gcloud_env):
    """Exit code 2 (bad settings, here memory the machine does not have, which only the VM
    can tell) stops the unit for good: systemd does not restart it. The catalogue gives
    n2-standard-48 192 GB, so launch lets 2 x 90 GiB pass; the emulated VM, a container on
    this host, has the host's memory."""
    instance = _settings(project)["instance"]
    failed = daskbox(
        project,
        gcloud_env,
        "launch",
        "--image",
        vm_image.reference,
        "--source-range",
        CALLER,
        "--machine-type",
        "n2-standard-48",
        "--workers",
        "2",
        "--memory-per-worker",
        "90GiB",
        "--timeout",
        "60",
        "--keep-failed",
        check=False,
    )
    try:
        assert failed.returncode == 1
        # The boot watch reports the VM's own line at once (not the timeout); kept, the VM
        # shows that systemd did not restart the unit within its RestartSec (10 s).
        [message] = failed.stderr.strip().splitlines()
        assert message.startswith(f"error: the cluster on {instance} refused its settings: "), (
            message
        )
        assert "DASKBOX_MEMORY_PER_WORKER" in message
        assert f"get-serial-port-output {instance}" in message
        time.sleep(15)
        serial = emulator.vm(instance).serial_output()
        assert serial.count("Failed with result 'exit-code' (2)") == 1, serial
        assert "MEMORY_PER_WORKER" in serial
        assert "Scheduled restart job" not in serial
    finally:
        daskbox(project, gcloud_env, "teardown", check=False)
    assert emulator.instances == {} and emulator.firewalls == {}


def test_user_data_is_what_the_emulated_vm_ran(project, vm_image, emulator, gcloud_env):
    """The unit from the user-data ran its steps in order on the VM's serial port."""
    instance = _settings(project)["instance"]
    _launch(project, gcloud_env, vm_image.reference)
    try:
        [body] = emulator.bodies("POST", r"/instances$")
        metadata = {item["key"]: item["value"] for item in body["metadata"]["items"]}
        files = {f["path"] for f in yaml.safe_load(metadata["user-data"])["write_files"]}
        assert files == {
            "/etc/daskbox/boot-step.sh",
            "/etc/daskbox/client-ca.pem",
            "/etc/daskbox/node-tls.sh",
            "/etc/systemd/system/daskbox.service",
        }
        serial = emulator.vm(instance).serial_output()
        order = [
            serial.index(text)
            for text in (
                "Reached docker.service",
                "Pulling from",
                "Certificate request self-signature ok",
                "scheduler |",
            )
        ]
        assert order == sorted(order), serial
    finally:
        daskbox(project, gcloud_env, "teardown", check=False)
