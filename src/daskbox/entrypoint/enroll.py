"""Node certificates for worker VMs, with no private key ever leaving the VM it was made on.

The cluster CA's key lives on the scheduler VM only (``node_tls`` made it there at boot).
A worker VM cannot get a certificate from the laptop (it may be recreated by its group at
any hour, the laptop offline), and nothing secret may sit in its template. So:

* ``join`` (on each worker VM, at every boot): make the node key and a certificate
  request on the VM, once per boot disk; publish the *request* as a guest attribute of
  this VM (only processes on this VM can write its guest attributes: that is what makes
  the request authentic); wait until the scheduler VM publishes the signed certificate,
  check that it is for this key and chains to the cluster CA pinned in the template, and
  write the files the entrypoint reads.
* ``sign`` (on the scheduler VM, a unit of its own, the only container that sees the CA
  key): every few seconds, list the members of this cluster's managed instance group
  (Compute Engine API, with the VM's own service account token), read each member's
  request from its guest attributes, sign a node certificate for its key (the extensions
  are the signer's, never copied from the request), and publish the certificate as a guest
  attribute of the scheduler VM keyed by the member's name.

So only a VM the group created, running the group's boot, can get a node certificate;
requests and certificates are public; a recreated VM (same name, new key) gets a new
certificate without anyone's help. Runs in the image: standard library plus the
``openssl`` command every ``python:*-slim`` image has.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from daskbox.contract import (
    ENV_LISTEN_HOST,
    ENV_NODE_NAME,
    GUEST_ATTRIBUTE_CERT_NAMESPACE,
    GUEST_ATTRIBUTE_NAMESPACE,
    GUEST_ATTRIBUTE_NODE_CSR,
)

METADATA = "http://metadata.google.internal/computeMetadata/v1/"
# The node certificate's profile, the same for the scheduler VM's own node (node_tls) and
# for every worker VM: listen and dial with one certificate (see daskbox.gcloud.tls).
NODE_EXTENSIONS = """\
[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[node]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
# One certificate for listening and for dialing (distributed's roles): both usages.
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:daskbox-node, IP:127.0.0.1
authorityKeyIdentifier = keyid
"""
FIRST_PAUSE, LONGEST_PAUSE = 1.0, 8.0


def say(message: str) -> None:
    print(f"daskbox enroll: {message}", flush=True)


def metadata(path: str, *, method: str = "GET", data: bytes | None = None) -> str:
    """One call to this VM's metadata server."""
    request = urllib.request.Request(
        METADATA + path, data=data, method=method, headers={"Metadata-Flavor": "Google"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return bytes(response.read()).decode()


def access_token() -> str:
    """This VM's service account token (its scopes must include Compute Engine reads)."""
    return str(json.loads(metadata("instance/service-accounts/default/token"))["access_token"])


def compute(api: str, path: str, *, method: str = "GET") -> Any:
    """One Compute Engine API call with this VM's token; None when the resource is missing."""
    request = urllib.request.Request(
        api + path,
        method=method,
        data=b"" if method == "POST" else None,
        headers={"Authorization": f"Bearer {access_token()}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise


def guest_attribute(api: str, zone_path: str, instance: str, namespace: str, key: str) -> str:
    """A guest attribute of another instance, read through the API ("" while unset)."""
    found = compute(
        api, f"{zone_path}/instances/{instance}/getGuestAttributes?queryPath={namespace}/{key}"
    )
    items = ((found or {}).get("queryValue") or {}).get("items") or []
    return str(items[0].get("value", "")) if items else ""


def openssl(*args: str) -> str:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ValueError(f"openssl {args[0]} failed: {result.stderr.strip()}")
    return result.stdout


def public_key(*, cert: Path | None = None, key: Path | None = None) -> str:
    """The PEM public key of a certificate or of a private key."""
    if cert is not None:
        return openssl("x509", "-noout", "-pubkey", "-in", str(cert))
    assert key is not None
    return openssl("pkey", "-pubout", "-in", str(key))


# -- the scheduler VM's side -------------------------------------------------------------
def sign_request(csr_pem: str, ca_dir: Path, days: int) -> str:
    """A node certificate for the key of ``csr_pem`` (its signature checked), signed by the
    cluster CA; subject and extensions are the signer's, never the request's."""
    with tempfile.TemporaryDirectory() as folder:
        csr, conf, cert = Path(folder, "node.csr"), Path(folder, "node.cnf"), Path(folder, "n.pem")
        csr.write_text(csr_pem)
        conf.write_text(NODE_EXTENSIONS)
        openssl("req", "-in", str(csr), "-noout", "-verify")
        serial = "0x" + os.urandom(16).hex()
        openssl(
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(ca_dir / "ca.pem"),
            "-CAkey",
            str(ca_dir / "ca-key.pem"),
            "-set_serial",
            serial,
            "-days",
            str(days),
            "-extfile",
            str(conf),
            "-extensions",
            "node",
            "-out",
            str(cert),
        )
        return cert.read_text()


def sign_members(
    api: str, zone_path: str, group: str, ca_dir: Path, days: int, signed: dict[str, str]
) -> int:
    """One round: sign every group member's new request; returns how many were signed."""
    listed = compute(
        api, f"{zone_path}/instanceGroupManagers/{group}/listManagedInstances", method="POST"
    )
    count = 0
    for member in (listed or {}).get("managedInstances") or []:
        name = str(member.get("instance", "")).rstrip("/").rsplit("/", 1)[-1]
        if not name:
            continue
        request = guest_attribute(
            api, zone_path, name, GUEST_ATTRIBUTE_NAMESPACE, GUEST_ATTRIBUTE_NODE_CSR
        )
        digest = hashlib.sha256(request.encode()).hexdigest()
        if not request.strip() or signed.get(name) == digest:
            continue
        try:
            cert = sign_request(request, ca_dir, days)
        except ValueError as error:
            say(f"refused the request of {name}: {error}")
            signed[name] = digest
            continue
        metadata(
            f"instance/guest-attributes/{GUEST_ATTRIBUTE_CERT_NAMESPACE}/{name}",
            method="PUT",
            data=cert.encode(),
        )
        signed[name] = digest
        say(f"signed the node certificate of {name}")
        count += 1
    return count


def run_signer(args: argparse.Namespace) -> int:
    zone_path = f"projects/{args.project}/zones/{args.zone}"
    signed: dict[str, str] = {}
    pause = FIRST_PAUSE
    say(f"signing node certificates for the members of {args.group}")
    while True:
        try:
            pause = (
                FIRST_PAUSE
                if sign_members(
                    args.api, zone_path, args.group, Path(args.ca_dir), args.days, signed
                )
                else min(pause * 2, LONGEST_PAUSE)
            )
        except (OSError, ValueError) as error:  # the API or metadata server, for a moment
            say(f"round failed, retrying: {error}")
            pause = LONGEST_PAUSE
        time.sleep(pause)


# -- a worker VM's side --------------------------------------------------------------------
def run_join(args: argparse.Namespace) -> int:
    state, tls = Path(args.state), Path(args.tls)
    os.umask(0o077)
    state.mkdir(parents=True, exist_ok=True)
    tls.mkdir(parents=True, exist_ok=True)
    key, csr, cert = tls / "server-key.pem", state / "node.csr", tls / "server.pem"
    cluster_ca = Path(args.cluster_ca)
    if not key.exists() or not csr.exists():
        openssl(
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/O=daskbox/CN=daskbox-node",
            "-keyout",
            str(key),
            "-out",
            str(csr),
        )
    if not _valid(cert, key, cluster_ca):
        name = metadata("instance/name")
        metadata(
            f"instance/guest-attributes/{GUEST_ATTRIBUTE_NAMESPACE}/{GUEST_ATTRIBUTE_NODE_CSR}",
            method="PUT",
            data=csr.read_bytes(),
        )
        say(f"published the certificate request of {name}; waiting for {args.scheduler} to sign")
        zone_path = f"projects/{args.project}/zones/{args.zone}"
        pause = FIRST_PAUSE
        while True:
            try:
                found = guest_attribute(
                    args.api, zone_path, args.scheduler, GUEST_ATTRIBUTE_CERT_NAMESPACE, name
                )
            except (OSError, ValueError) as error:
                say(f"could not read the signed certificate yet: {error}")
                found = ""
            if found:
                candidate = state / "candidate.pem"
                candidate.write_text(found)
                if _valid(candidate, key, cluster_ca):
                    candidate.replace(cert)
                    break
            time.sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE)
        say("got a node certificate signed by the cluster CA")
    (tls / "ca.pem").write_text(cluster_ca.read_text() + Path(args.client_ca).read_text())
    # The workers are named after the VM and listen on its internal address only.
    Path(args.env_file).write_text(
        f"{ENV_NODE_NAME}={metadata('instance/name')}\n"
        f"{ENV_LISTEN_HOST}={metadata('instance/network-interfaces/0/ip')}\n"
    )
    os.chown(key, args.uid, args.uid)
    key.chmod(0o600)
    for public in (cert, tls / "ca.pem"):
        public.chmod(0o644)
    tls.chmod(0o755)
    return 0


def _valid(cert: Path, key: Path, cluster_ca: Path) -> bool:
    """``cert`` is for ``key`` and chains to the pinned cluster CA (and is valid now)."""
    if not cert.exists():
        return False
    try:
        openssl("verify", "-CAfile", str(cluster_ca), str(cert))
        return public_key(cert=cert) == public_key(key=key)
    except ValueError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m daskbox.entrypoint.enroll")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("sign", "join"):
        command = commands.add_parser(name)
        command.add_argument("--api", required=True, help="Compute Engine API base URL")
        command.add_argument("--project", required=True)
        command.add_argument("--zone", required=True)
    sign = commands.choices["sign"]
    sign.add_argument("--group", required=True, help="the managed instance group to serve")
    sign.add_argument("--ca-dir", required=True)
    sign.add_argument("--days", type=int, required=True)
    join = commands.choices["join"]
    join.add_argument("--scheduler", required=True, help="the scheduler VM's instance name")
    join.add_argument("--state", required=True)
    join.add_argument("--tls", required=True)
    join.add_argument("--cluster-ca", required=True)
    join.add_argument("--client-ca", required=True)
    join.add_argument("--uid", type=int, required=True)
    join.add_argument("--env-file", required=True, help="where to write the node's variables")
    args = parser.parse_args(argv)
    try:
        return run_signer(args) if args.command == "sign" else run_join(args)
    except KeyboardInterrupt:
        return 0
    except (OSError, ValueError) as error:
        print(f"daskbox enroll: {error}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
