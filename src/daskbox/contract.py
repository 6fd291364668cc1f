"""The values every stage shares, in one place: the image's layout and user, the entrypoint's
environment variables, the image labels, the TLS paths, the names daskbox gives containers
and instances, the target platforms and the project-side state folder.

A build writes these values, a launch relies on them, the entrypoint and the client read
them back; none of them restates one. This module is copied into the image next to the
entrypoint (the only other daskbox module there), so it imports the standard library only.
"""

from __future__ import annotations

from typing import Final

# -- the image ------------------------------------------------------------------------------
IMAGE_USER: Final = "daskbox"
IMAGE_UID: Final = 10001  # numeric: the VM host has no such user, only the image does
VENV: Final = "/opt/venv"  # the locked environment
ENTRYPOINT_ROOT: Final = "/opt/daskbox"  # on PYTHONPATH: daskbox/contract.py + daskbox/entrypoint
ENTRYPOINT_MODULE: Final = "daskbox.entrypoint"
DEFAULT_SCHEDULER_PORT: Final = 8786
DEFAULT_DASHBOARD_PORT: Final = 8787

# -- the entrypoint's settings (environment variables) --------------------------------------
ENV_WORKERS: Final = "DASKBOX_WORKERS"
ENV_THREADS_PER_WORKER: Final = "DASKBOX_THREADS_PER_WORKER"
ENV_MEMORY_PER_WORKER: Final = "DASKBOX_MEMORY_PER_WORKER"
ENV_IDLE_TIMEOUT: Final = "DASKBOX_IDLE_TIMEOUT"
ENV_SCHEDULER_PORT: Final = "DASKBOX_SCHEDULER_PORT"
ENV_DASHBOARD_PORT: Final = "DASKBOX_DASHBOARD_PORT"
ENV_TLS_CA_FILE: Final = "DASKBOX_TLS_CA_FILE"
ENV_TLS_CERT_FILE: Final = "DASKBOX_TLS_CERT_FILE"
ENV_TLS_KEY_FILE: Final = "DASKBOX_TLS_KEY_FILE"
# The address scheduler, workers and dashboard listen on: unset = every interface (a VM,
# behind its firewall), 127.0.0.1 for the local target (nothing on the LAN reaches it).
ENV_LISTEN_HOST: Final = "DASKBOX_LISTEN_HOST"
LOOPBACK: Final = "127.0.0.1"
# Worker mode: with a scheduler address the entrypoint starts only nannies and workers
# (a worker VM of a cluster), which join that scheduler; without one, scheduler + workers.
ENV_SCHEDULER_ADDRESS: Final = "DASKBOX_SCHEDULER_ADDRESS"
# The workers' name prefix (worker names are <node>-0, <node>-1, ...): the VM's name on
# Compute Engine, so names stay unique across VMs and the environment check counts per VM.
ENV_NODE_NAME: Final = "DASKBOX_NODE_NAME"
# Worker mode: after this long without reaching the scheduler's port the entrypoint exits 0
# (a worker VM then powers off instead of retrying until its termination time); 0 = never.
ENV_ORPHAN_TIMEOUT: Final = "DASKBOX_ORPHAN_TIMEOUT"
DEFAULT_ORPHAN_TIMEOUT_SECONDS: Final = 600
DEFAULT_NODE_NAME: Final = "worker"
# The original recipe's names, still accepted by the entrypoint.
LEGACY_ENV_WORKERS: Final = "NUM_WORKERS"
LEGACY_ENV_THREADS_PER_WORKER: Final = "THREADS_PER_WORKER"
LEGACY_ENV_MEMORY_PER_WORKER: Final = "MEMORY_PER_WORKER"

# -- the dashboard ----------------------------------------------------------------------------
# host:port the scheduler's dashboard preload serves on; set by the entrypoint for it.
ENV_SERVE_DASHBOARD: Final = "DASKBOX_SERVE_DASHBOARD"
DASHBOARD_PATH: Final = "/status"
# `invoke dashboard` and connect() forward http://127.0.0.1:<this port> to the cluster's
# dashboard over mutual TLS (not 8787: the local target's own dashboard may hold that one).
DEFAULT_DASHBOARD_FORWARD_PORT: Final = 8788

# -- set in the image by its build (ENV), read by the environment report --------------------
ENV_LOCK_HASH: Final = "DASKBOX_LOCK_HASH"
ENV_GROUPS: Final = "DASKBOX_GROUPS"
ENV_IMAGE_TAG: Final = "DASKBOX_IMAGE_TAG"

# -- image labels ---------------------------------------------------------------------------
LABEL_LOCK_HASH: Final = "dev.daskbox.lock-hash"
LABEL_INSTALLED_DIGEST: Final = "dev.daskbox.installed-digest"
LABEL_PYTHON_VERSION: Final = "dev.daskbox.python-version"
LABEL_VERSION: Final = "dev.daskbox.version"
LABEL_GROUPS: Final = "dev.daskbox.groups"
LABEL_EXTRAS: Final = "dev.daskbox.extras"
LABEL_PLATFORM: Final = "dev.daskbox.platform"

# -- TLS: the server side's files, at the same path on the VM host and in the container -----
TLS_DIR: Final = "/etc/daskbox/tls"
TLS_CA_FILE: Final = "ca.pem"
TLS_CERT_FILE: Final = "server.pem"
TLS_KEY_FILE: Final = "server-key.pem"

# -- Google credentials on the local target (only with --application-credentials) ----------
# The user's application-default credentials, mounted read-only where Google's client
# libraries (gcsfs, google-cloud-storage, pandas through fsspec) look for them.
GOOGLE_CREDENTIALS_DIR: Final = "/etc/daskbox/google"
GOOGLE_CREDENTIALS_FILE: Final = "application_default_credentials.json"
ENV_GOOGLE_CREDENTIALS: Final = "GOOGLE_APPLICATION_CREDENTIALS"

# -- the cluster's TLS on a VM: made there at boot; only the CA certificate is published ---
GUEST_ATTRIBUTE_NAMESPACE: Final = "daskbox"
GUEST_ATTRIBUTE_CLUSTER_CA: Final = "cluster-ca"  # PEM of the VM's cluster CA, pinned by launch
# The boot unit's report, beside it (launch stops waiting on a final failure): the step it
# is at, and when a step failed, its last error line and then "<step> <exit code>".
GUEST_ATTRIBUTE_BOOT_STEP: Final = "boot-step"
GUEST_ATTRIBUTE_BOOT_ERROR: Final = "boot-error"
GUEST_ATTRIBUTE_BOOT_EXIT: Final = "boot-exit"
# Worker VMs: each publishes a certificate request for its own node key on itself; the
# scheduler VM's signer publishes the signed certificate on the scheduler VM, keyed by
# the worker VM's name. Requests and certificates are public; keys never leave their VM.
GUEST_ATTRIBUTE_NODE_CSR: Final = "node-csr"
GUEST_ATTRIBUTE_CERT_NAMESPACE: Final = "daskbox-certs"
# The Compute Engine API the VMs' signer and joiners call (gcloud's endpoint override,
# when one is set, is handed to them instead).
COMPUTE_API: Final = "https://compute.googleapis.com/compute/v1/"

# -- the entrypoint's exit codes that others act on ------------------------------------------
# The entrypoint's one-line errors start with this; a failed local launch quotes the last one.
ENTRYPOINT_ERROR_PREFIX: Final = "daskbox entrypoint: "
EXIT_BAD_SETTINGS: Final = 2  # never restarted: the same settings fail the same way

# -- names daskbox gives what it runs -------------------------------------------------------
CONTAINER_NAME: Final = "daskbox"  # the container on a VM
CONTAINER_LABEL: Final = "dev.daskbox.instance"  # on every daskbox container: its instance
INSTANCE_LABEL: Final = "daskbox"  # on every daskbox VM: labels.daskbox=managed
INSTANCE_LABEL_VALUE: Final = "managed"
INSTANCE_LOCK_LABEL: Final = "daskbox-lock"  # the first 16 hex digits of the lock hash
INSTANCE_PROJECT_LABEL: Final = "daskbox-project"  # the launching project: teardown finds by it
CONTAINER_PROJECT_LABEL: Final = "dev.daskbox.project"  # the same on local containers

# -- target platforms: OCI platform -> the machine name Python and wheel tags use ----------
PLATFORM_MACHINES: Final = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}
DEFAULT_PLATFORM: Final = "linux/amd64"

# -- the project's side ---------------------------------------------------------------------
STATE_DIR: Final = ".daskbox"  # <project>/.daskbox: connection files, records, caches
