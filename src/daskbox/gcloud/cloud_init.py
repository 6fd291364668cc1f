"""LaunchSpec -> ``#cloud-config`` user-data for Container-Optimized OS. Pure: text out.

Everything in it is public: the client CA's certificate, a script and a systemd unit.
COS runs cloud-init at every boot (``/var/lib/cloud`` and ``/etc`` are stateless), so the
user-data describes the whole machine and each boot rebuilds it the same way; what must
survive a reboot (the cluster CA, the node key, Docker's client configuration) lives on
the stateful ``/var/lib/daskbox``.

The unit, as Google's COS examples run containers, is ordered after the network,
``gcr-online.target`` (the metadata server's credentials) and Docker, and each start:

1. configures ``docker-credential-gcr`` for a Google registry (the VM's service account);
2. pulls the image by digest, retried with doubling waits (2 s up to 2 minutes);
3. makes the cluster CA and node key on the VM (``node_tls``) in a throwaway container of
   that image, once per boot disk;
4. publishes the cluster CA certificate as a guest attribute (the laptop pins it);
5. removes a container a previous boot left behind, then runs the cluster in the
   foreground, so systemd watches the entrypoint itself.

The pull and the cluster run through ``BOOT_STEP_SCRIPT``, which publishes the step and,
when it fails, its exit code and last error line beside the CA (see ``boot_watch``).

systemd restarts it after a crash but not after exit code 2 (bad settings: the same
settings fail the same way), and ``SuccessAction=poweroff`` powers the VM off when it
exits 0, which the entrypoint does after its idle timeout. Only this boot's process can
trigger that: an exit from a previous boot is never looked at.
"""

from __future__ import annotations

import shlex
from typing import Any

import yaml

from daskbox import contract
from daskbox.errors import LaunchSpecError
from daskbox.gcloud.boot_watch import STEP_CLUSTER, STEP_PULL, STEP_WORKERS
from daskbox.gcloud.node_tls import NODE_TLS_SCRIPT, ca_instance_name
from daskbox.gcloud.registry import is_google_registry, registry_host
from daskbox.gcloud.spec import LaunchSpec, container_args

# On the VM host (COS mounts / read-only; /etc is rebuilt at every boot, /var is kept).
STATE_ROOT = "/var/lib/daskbox"  # HOME for Docker's client config and the TLS state
CA_DIR = f"{STATE_ROOT}/ca"  # root-only: the cluster CA key, never mounted into the cluster
HOST_TLS_DIR = f"{STATE_ROOT}/tls"  # mounted read-only at contract.TLS_DIR
CONFIG_DIR = "/etc/daskbox"
CLIENT_CA_PATH = f"{CONFIG_DIR}/client-ca.pem"
NODE_TLS_PATH = f"{CONFIG_DIR}/node-tls.sh"
CLUSTER_CA_PATH = f"{CONFIG_DIR}/cluster-ca.pem"  # worker VMs: pinned from the scheduler VM
NODE_ENV_PATH = f"{STATE_ROOT}/node.env"  # worker VMs: the VM's name and internal IP
BOOT_STEP_PATH = f"{CONFIG_DIR}/boot-step.sh"  # publishes the boot's progress and failure
UNIT_NAME = "daskbox.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT_NAME}"
SIGNER_UNIT_NAME = "daskbox-signer.service"
SIGNER_UNIT_PATH = f"/etc/systemd/system/{SIGNER_UNIT_NAME}"
SIGNER_NAME = "daskbox-signer"
ENROLL_MODULE = f"{contract.ENTRYPOINT_MODULE}.enroll"
DOCKER = "/usr/bin/docker"
METADATA_URL = "http://metadata.google.internal/computeMetadata/v1"
GUEST_ATTRIBUTE_URL = (
    f"{METADATA_URL}/instance/guest-attributes/"
    f"{contract.GUEST_ATTRIBUTE_NAMESPACE}/{contract.GUEST_ATTRIBUTE_CLUSTER_CA}"
)
# `docker pull` with doubling waits (2 s, 4 s, ... 128 s); $1 is the image. What the
# registry says it does not have (the image, its repository, a layer) is not retried.
PULL_WITH_BACKOFF = (
    'delay=2; for attempt in 1 2 3 4 5 6 7; do out=$(docker pull "$1" 2>&1) && '
    '{ echo "$out"; exit 0; }; echo "$out" >&2; case $out in *"manifest unknown"*|'
    '*"name unknown"*|*"blob unknown"*|*"unknown blob"*) exit 1;; esac; '
    'echo "pull failed (attempt $attempt), retrying in ${delay}s"; sleep "$delay"; '
    "delay=$((delay * 2)); done; exit 1"
)

BOOT_STEP_SCRIPT = f"""\
# One step of daskbox's boot unit: $1 names it, the rest is its command, whose output
# still reaches the journal. Publishes the step and, when it fails, its last error line
# and then "STEP CODE" as guest attributes (launch stops waiting on them).
set -u
step=$1
shift
url={METADATA_URL}/instance/guest-attributes/{contract.GUEST_ATTRIBUTE_NAMESPACE}
put() {{
  curl --silent --show-error --fail --retry 3 --retry-connrefused --request PUT \\
    --header 'Metadata-Flavor: Google' --data-binary "$2" "$url/$1" || true
}}
put {contract.GUEST_ATTRIBUTE_BOOT_STEP} "$step"
log=$(mktemp)
exec 3> >(exec tee "$log" >&2)
relay=$!
"$@" 2>&3 3>&- &
child=$!
exec 3>&-
# systemd's stop signal reaches the step (docker relays it to the container): wait for it.
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
while :; do wait "$child"; code=$?; kill -0 "$child" 2>/dev/null || break; done
wait "$child"
code=$?
wait "$relay"
if [ "$code" -ne 0 ]; then
  prefix='{contract.ENTRYPOINT_ERROR_PREFIX}'
  line=$(grep -F -- "$prefix" "$log" | tail -n 1)
  [ -n "$line" ] || line=$(grep -v '^[[:space:]]*$' "$log" | tail -n 1)
  put {contract.GUEST_ATTRIBUTE_BOOT_ERROR} "${{line#*"$prefix"}}"
  put {contract.GUEST_ATTRIBUTE_BOOT_EXIT} "$step $code"
fi
rm -f "$log"
exit "$code"
"""


def _exec(argv: list[str]) -> str:
    """An argv as one systemd ``Exec*=`` value: shell-style quoting, with systemd's own
    escapes for ``$`` (variables) and ``%`` (specifiers).

    systemd reads whole-word quotes as a shell does but treats backslashes and quotes
    inside a word its own way, so an argument holding either is refused, not guessed at.
    """
    for arg in argv:
        if "'" in arg or "\\" in arg or "\n" in arg:
            raise LaunchSpecError(f"{arg!r} cannot be passed through a systemd unit safely")
    return shlex.join(argv).replace("$", "$$").replace("%", "%%")


def node_tls_argv(spec: LaunchSpec) -> list[str]:
    """The throwaway container that makes the cluster CA and node key (``node_tls``)."""
    return [
        DOCKER,
        "run",
        "--rm",
        "--network",
        "none",
        "--user",
        "0:0",
        "--entrypoint",
        "/bin/sh",
        "--mount",
        f"type=bind,source={STATE_ROOT},target={STATE_ROOT}",
        "--mount",
        f"type=bind,source={CONFIG_DIR},target={CONFIG_DIR},readonly",
        spec.image.reference,
        NODE_TLS_PATH,
        CA_DIR,
        HOST_TLS_DIR,
        CLIENT_CA_PATH,
        str(spec.tls_days),
        str(contract.IMAGE_UID),
        ca_instance_name(spec.instance),
    ]


def publish_argv() -> list[str]:
    """Publish the cluster CA certificate (public) as a guest attribute."""
    return [
        "/usr/bin/curl",
        "--silent",
        "--show-error",
        "--fail",
        "--retry",
        "5",
        "--retry-connrefused",
        "--request",
        "PUT",
        "--header",
        "Metadata-Flavor: Google",
        "--upload-file",
        f"{HOST_TLS_DIR}/cluster-ca.pem",
        GUEST_ATTRIBUTE_URL,
    ]


def _step(step: str, argv: list[str]) -> list[str]:
    """``argv`` run as one reported step of the boot (``BOOT_STEP_SCRIPT``)."""
    return ["/bin/bash", BOOT_STEP_PATH, step, *argv]


def cluster_argv(spec: LaunchSpec) -> list[str]:
    """The cluster's container, in the foreground under systemd (which restarts it); its
    workers are named after the VM."""
    node = ((contract.ENV_NODE_NAME, spec.instance),)
    args = container_args(spec, tls_source=HOST_TLS_DIR, name=contract.CONTAINER_NAME, env=node)
    return [DOCKER, "run", "--rm", *args]


def _pull(spec: LaunchSpec) -> list[list[str]]:
    """Configure Google's credential helper (for a Google registry), then pull by digest."""
    registry = registry_host(spec.image.reference)
    pre = []
    if is_google_registry(registry):
        pre.append(["/usr/bin/docker-credential-gcr", "configure-docker", "--registries", registry])
    pull = ["/bin/bash", "-c", PULL_WITH_BACKOFF, "pull", spec.image.reference]
    return [*pre, _step(STEP_PULL, pull)]


def _unit(description: str, pre: list[list[str]], start: list[str]) -> str:
    """The systemd unit that runs a cluster container (see the module docstring)."""
    lines = [
        "[Unit]",
        f"Description={description}",
        "Wants=network-online.target gcr-online.target docker.service",
        "After=network-online.target gcr-online.target docker.service",
        # A clean exit is the entrypoint's idle timeout: the VM stops costing money.
        "SuccessAction=poweroff",
        "StartLimitIntervalSec=0",
        "",
        "[Service]",
        f"Environment=HOME={STATE_ROOT}",
        # The pull may wait minutes for the registry; the default 90 s would cut it short.
        "TimeoutStartSec=0",
        *(f"ExecStartPre={_exec(argv)}" for argv in pre),
        f"ExecStartPre=-{_exec([DOCKER, 'rm', '--force', contract.CONTAINER_NAME])}",
        f"ExecStart={_exec(start)}",
        "Restart=on-failure",
        "RestartSec=10",
        f"RestartPreventExitStatus={contract.EXIT_BAD_SETTINGS}",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def unit_text(spec: LaunchSpec) -> str:
    """The scheduler VM's unit: pull, make the cluster CA and node pair, publish the CA,
    run the scheduler and its workers."""
    return _unit(
        f"daskbox: Dask scheduler and workers of {spec.instance}",
        [*_pull(spec), node_tls_argv(spec), publish_argv()],
        _step(STEP_CLUSTER, cluster_argv(spec)),
    )


def _python_in_image(spec: LaunchSpec, mounts: list[str], *args: str) -> list[str]:
    """``docker run`` of one of the image's daskbox modules as root on the host network
    (to reach the metadata server and the Compute Engine API)."""
    return [
        DOCKER,
        "run",
        "--rm",
        "--network",
        "host",
        "--user",
        "0:0",
        "--entrypoint",
        f"{contract.VENV}/bin/python",
        *mounts,
        spec.image.reference,
        "-m",
        ENROLL_MODULE,
        *args,
        "--api",
        spec.compute_api,
        "--project",
        spec.project,
        "--zone",
        spec.zone,
    ]


def signer_argv(spec: LaunchSpec) -> list[str]:
    """The scheduler VM's signer (``daskbox.entrypoint.enroll sign``): the only container
    that sees the cluster CA key (read-only)."""
    assert spec.workers is not None
    mount = [
        "--mount",
        f"type=bind,source={CA_DIR},target={CA_DIR},readonly",
        "--name",
        SIGNER_NAME,
    ]
    return _python_in_image(
        spec,
        mount,
        "sign",
        "--group",
        spec.workers.group,
        "--ca-dir",
        CA_DIR,
        "--days",
        str(spec.tls_days),
    )


def signer_unit_text(spec: LaunchSpec) -> str:
    """Runs the signer once the cluster unit has made the CA (systemd starts a simple
    unit's ExecStart only after its ExecStartPre steps: ``After=`` waits for that)."""
    lines = [
        "[Unit]",
        f"Description=daskbox: node certificates for the worker VMs of {spec.instance}",
        f"Wants={UNIT_NAME}",
        f"After={UNIT_NAME}",
        "StartLimitIntervalSec=0",
        "",
        "[Service]",
        f"Environment=HOME={STATE_ROOT}",
        f"ExecStartPre=-{_exec([DOCKER, 'rm', '--force', SIGNER_NAME])}",
        f"ExecStart={_exec(signer_argv(spec))}",
        "Restart=always",
        "RestartSec=10",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def join_argv(spec: LaunchSpec) -> list[str]:
    """A worker VM's enrolment (``daskbox.entrypoint.enroll join``): its node key and
    request, made on the VM, and the certificate the scheduler VM's signer publishes."""
    mounts = [
        "--mount",
        f"type=bind,source={STATE_ROOT},target={STATE_ROOT}",
        "--mount",
        f"type=bind,source={CONFIG_DIR},target={CONFIG_DIR},readonly",
    ]
    return _python_in_image(
        spec,
        mounts,
        "join",
        "--scheduler",
        spec.instance,
        "--state",
        CA_DIR,
        "--tls",
        HOST_TLS_DIR,
        "--cluster-ca",
        CLUSTER_CA_PATH,
        "--client-ca",
        CLIENT_CA_PATH,
        "--uid",
        str(contract.IMAGE_UID),
        "--env-file",
        NODE_ENV_PATH,
    )


def worker_argv(spec: LaunchSpec, scheduler_ip: str) -> list[str]:
    """A worker VM's container: worker mode, joining the scheduler VM's internal address,
    named and listening as the join step wrote into the env file (the VM's name and
    internal IP)."""
    address = ((contract.ENV_SCHEDULER_ADDRESS, f"tls://{scheduler_ip}:{spec.scheduler_port}"),)
    args = container_args(spec, tls_source=HOST_TLS_DIR, name=contract.CONTAINER_NAME, env=address)
    return [DOCKER, "run", "--rm", "--env-file", NODE_ENV_PATH, *args]


def worker_unit_text(spec: LaunchSpec, scheduler_ip: str) -> str:
    """A worker VM's unit: pull, enrol, run the workers; power off when their scheduler
    closed them (its idle timeout)."""
    return _unit(
        f"daskbox: Dask workers of {spec.instance}",
        [*_pull(spec), join_argv(spec)],
        _step(STEP_WORKERS, worker_argv(spec, scheduler_ip)),
    )


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PEM, scripts, the unit) as ``|`` blocks, argv as ``[...]`` lines."""


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _list_presenter(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.SequenceNode:
    argv = all(isinstance(item, str) for item in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=argv)


_Dumper.add_representer(str, _str_presenter)
_Dumper.add_representer(list, _list_presenter)


def _cloud_config(files: list[tuple[str, str]], units: list[str]) -> dict[str, Any]:
    return {
        "write_files": [
            {"path": path, "permissions": "0644", "owner": "root:root", "content": content}
            for path, content in files
        ],
        "runcmd": [
            # --mount needs its source to exist; /var keeps it from the first boot on.
            ["mkdir", "-p", STATE_ROOT],
            ["systemctl", "daemon-reload"],
            # --no-block: cloud-init must not wait for a unit ordered after the network.
            ["systemctl", "start", "--no-block", *units],
        ],
    }


def cloud_config(spec: LaunchSpec) -> dict[str, Any]:
    """The scheduler VM's cloud-config as data (what ``render_user_data`` serializes):
    public files only; with worker VMs, the signer's unit too."""
    files = [
        (CLIENT_CA_PATH, spec.client_ca_pem),
        (NODE_TLS_PATH, NODE_TLS_SCRIPT),
        (BOOT_STEP_PATH, BOOT_STEP_SCRIPT),
        (UNIT_PATH, unit_text(spec)),
    ]
    units = [UNIT_NAME]
    if spec.workers is not None:
        files.append((SIGNER_UNIT_PATH, signer_unit_text(spec)))
        units.append(SIGNER_UNIT_NAME)
    return _cloud_config(files, units)


def worker_cloud_config(spec: LaunchSpec, cluster_ca_pem: str, scheduler_ip: str) -> dict[str, Any]:
    """The worker VMs' cloud-config: the two CA certificates (the cluster's, pinned from
    the scheduler VM, and the client's) and the unit. Public material only."""
    files = [
        (CLIENT_CA_PATH, spec.client_ca_pem),
        (CLUSTER_CA_PATH, cluster_ca_pem),
        (BOOT_STEP_PATH, BOOT_STEP_SCRIPT),
        (UNIT_PATH, worker_unit_text(spec, scheduler_ip)),
    ]
    return _cloud_config(files, [UNIT_NAME])


def _render(config: dict[str, Any]) -> str:
    body = yaml.dump(config, Dumper=_Dumper, sort_keys=False, width=1000)
    return f"#cloud-config\n{body}"


def render_user_data(spec: LaunchSpec) -> str:
    """``#cloud-config`` text for the scheduler VM's ``user-data`` metadata."""
    return _render(cloud_config(spec))


def render_worker_user_data(spec: LaunchSpec, cluster_ca_pem: str, scheduler_ip: str) -> str:
    """``#cloud-config`` text for the worker VMs' template."""
    return _render(worker_cloud_config(spec, cluster_ca_pem, scheduler_ip))
