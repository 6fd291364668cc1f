"""The VM's side of TLS: at boot, make the cluster CA and the node key on the VM itself.

``NODE_TLS_SCRIPT`` runs in a throwaway container of the cluster's own image (``openssl``
and ``/bin/sh`` come with every ``python:*-slim`` image, since Debian's ca-certificates
depends on openssl; Container-Optimized OS itself is not documented to ship openssl), as
root, with no network. It makes, once per boot disk:

* ``STATE/ca-key.pem`` + ``STATE/ca.pem``: the cluster CA (the key root-only, never mounted
  into the cluster's container, never sent anywhere);
* ``TLS/server-key.pem`` + ``TLS/server.pem``: the node pair the scheduler and workers
  present, signed by the cluster CA (``serverAuth`` and ``clientAuth``, see
  ``daskbox.gcloud.tls``), the key owned by the image's non-root user, mode 0600;

and at every boot ``TLS/ca.pem``, the trust bundle (the cluster CA, for workers and the
scheduler, plus the laptop's client CA from the instance metadata), and
``TLS/cluster-ca.pem``, the certificate the boot publishes as a guest attribute for the
laptop to pin. All of it sits on COS's stateful ``/var``, so a second boot presents the
same CA and the laptop's pin still holds.

Arguments: STATE TLS CLIENT_CA DAYS UID INSTANCE, where INSTANCE is ``ca_instance_name``
of the instance (it goes into the CA's common name). Pure text; ``cloud_init`` places it.
"""

from __future__ import annotations

import hashlib

# The node certificate's profile, shared with the worker VMs' signer.
from daskbox.entrypoint.enroll import NODE_EXTENSIONS

# X.509 caps a common name at 64 characters (RFC 5280's ub-common-name); cryptography and
# openssl refuse a longer one.
MAX_COMMON_NAME = 64
_LONGEST_CA_PREFIX = "daskbox cluster CA for "


def ca_common_name(role: str, instance: str) -> str:
    """``daskbox <role> CA for <instance>`` (role ``client`` or ``cluster``), at most 64
    characters for any instance name (``ca_instance_name``)."""
    return f"daskbox {role} CA for {ca_instance_name(instance)}"


def ca_instance_name(instance: str) -> str:
    """``instance`` as the CA common names hold it: unchanged when it fits, else cut, with
    the first 8 hex digits of its SHA-256 so two long names sharing a prefix stay apart."""
    room = MAX_COMMON_NAME - len(_LONGEST_CA_PREFIX)
    if len(instance) <= room:
        return instance
    digest = hashlib.sha256(instance.encode()).hexdigest()[:8]
    return f"{instance[: room - len(digest) - 1]}-{digest}"


NODE_TLS_SCRIPT = (
    r"""#!/bin/sh
# daskbox: make this cluster's CA and node certificate on the VM, once per boot disk.
# The private keys never leave this VM; only the CA certificate is published.
set -eu
state=$1 tls=$2 client_ca=$3 days=$4 uid=$5 instance=$6
umask 077
mkdir -p "$state" "$tls"
if [ ! -s "$state/ca-key.pem" ] || [ ! -s "$tls/server-key.pem" ] || [ ! -s "$tls/server.pem" ]
then
  conf="$state/openssl.cnf"
  cat > "$conf" <<'CONF'
"""
    + NODE_EXTENSIONS
    + r"""CONF
  openssl req -x509 -new -config "$conf" -extensions ca -newkey ec \
    -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
    -subj "/O=daskbox/CN=daskbox cluster CA for $instance" \
    -keyout "$state/ca-key.pem" -out "$state/ca.pem"
  openssl req -new -config "$conf" -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/O=daskbox/CN=daskbox-node" -keyout "$tls/server-key.pem" -out "$state/node.csr"
  openssl x509 -req -in "$state/node.csr" -CA "$state/ca.pem" -CAkey "$state/ca-key.pem" \
    -set_serial "0x$(openssl rand -hex 16)" -days "$days" -extfile "$conf" \
    -extensions node -out "$tls/server.pem"
  rm -f "$state/node.csr" "$conf"
fi
cat "$state/ca.pem" "$client_ca" > "$tls/ca.pem"
cp "$state/ca.pem" "$tls/cluster-ca.pem"
chown "$uid:$uid" "$tls/server-key.pem"
chmod 0600 "$tls/server-key.pem"
chmod 0644 "$tls/server.pem" "$tls/ca.pem" "$tls/cluster-ca.pem"
chmod 0755 "$tls"
chmod 0700 "$state"
"""
)
