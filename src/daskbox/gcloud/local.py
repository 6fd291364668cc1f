"""The local target: the VM's container, run by the local Docker engine.

The same container as on a VM (``spec.container_args``: host network, the same
environment, the TLS folder mounted read-only at the same path); only its name, the TLS
folder's host path and who restarts it differ. Without systemd, Docker restarts it
(``on-failure:5``), and Docker cannot spare exit code 2, so launch first runs the
entrypoint's ``--dry-run`` in the very same container set-up: bad settings stop the launch
with the entrypoint's own line instead of a restart loop. Those two commands run through
the docker CLI, so what is printed is what runs; everything else (inspect, logs, remove,
list) goes through the Docker Engine API.

The cluster runs on this machine, so its TLS material is made here (``make_local_cluster``).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import os
import shlex
import shutil
import subprocess
from pathlib import Path, PurePath

import docker
import docker.errors
from docker.models.containers import Container

from daskbox import contract
from daskbox._docker import docker_client
from daskbox._files import write_atomically
from daskbox._tasks import Progress
from daskbox.client.connection import AnyPath, ConnectionFile, connection_dir, connection_path
from daskbox.errors import DaskboxError, DockerUnavailable, Interrupted
from daskbox.gcloud.ready import wait_for_scheduler
from daskbox.gcloud.settings import LaunchSettings
from daskbox.gcloud.spec import (
    LOCAL_RESTART_POLICY,
    LaunchSpec,
    connection_for,
    container_args,
    container_env,
    tls_mount,
)
from daskbox.gcloud.tls import LaunchTLS, ServerTLS, make_local_cluster


class LocalLaunchError(DaskboxError):
    """The local container could not be started or never answered."""


def tls_dir(project_root: AnyPath, instance: str) -> AnyPath:
    """Host folder of one local launch's TLS material (owner-only, removed on teardown)."""
    return connection_dir(project_root) / f"{instance}.tls"


def server_tls_dir(project_root: AnyPath, instance: str) -> AnyPath:
    """The folder mounted into the container: the server's files, inside ``tls_dir``."""
    return tls_dir(project_root, instance) / "server"


def google_credentials_dir(project_root: AnyPath, instance: str) -> AnyPath:
    """The folder mounted when asked: a copy of the user's application-default credentials."""
    return tls_dir(project_root, instance) / "google"


def application_default_credentials() -> Path:
    """The file Google's client libraries read as the user's application-default credentials.

    The same search as google-auth: ``GOOGLE_APPLICATION_CREDENTIALS``, then gcloud's
    configuration folder (``CLOUDSDK_CONFIG``, ``%APPDATA%\\gcloud`` on Windows,
    ``~/.config/gcloud`` elsewhere).
    """
    explicit = os.environ.get(contract.ENV_GOOGLE_CREDENTIALS)
    if explicit:
        path = Path(explicit)
    else:
        config = os.environ.get("CLOUDSDK_CONFIG")
        if config:
            folder = Path(config)
        elif os.name == "nt":
            folder = Path(os.environ.get("APPDATA", Path.home())) / "gcloud"
        else:
            folder = Path.home() / ".config" / "gcloud"
        path = folder / contract.GOOGLE_CREDENTIALS_FILE
    if not path.is_file():
        raise LocalLaunchError(
            f"no application-default credentials at {path}: run "
            "`gcloud auth application-default login`, or launch without --application-credentials"
        )
    return path


LocalAdditions = tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]


def local_additions(
    project_root: PurePath, spec: LaunchSpec, *, credentials: bool
) -> LocalAdditions:
    """What the local container adds to the VM's: environment and read-only mounts.

    On a laptop, host networking would put every port on the LAN: the entrypoint listens
    on loopback only. With ``credentials`` the copy of the user's application-default
    credentials is mounted read-only, and Google's libraries are pointed at it.
    """
    env: tuple[tuple[str, str], ...] = ((contract.ENV_LISTEN_HOST, contract.LOOPBACK),)
    mounts: tuple[tuple[str, str], ...] = ()
    if credentials:
        folder = str(google_credentials_dir(project_root, spec.instance))
        mounts = ((folder, contract.GOOGLE_CREDENTIALS_DIR),)
        inside = f"{contract.GOOGLE_CREDENTIALS_DIR}/{contract.GOOGLE_CREDENTIALS_FILE}"
        env += ((contract.ENV_GOOGLE_CREDENTIALS, inside),)
    return env, mounts


def local_argv(project_root: PurePath, spec: LaunchSpec, *, credentials: bool = False) -> list[str]:
    """``docker run`` of the cluster: detached, restarted by Docker after a crash."""
    source = str(server_tls_dir(project_root, spec.instance))
    env, mounts = local_additions(project_root, spec, credentials=credentials)
    container = container_args(
        spec, tls_source=source, name=spec.instance, env=env, read_only_mounts=mounts
    )
    return ["docker", "run", "--detach", "--restart", LOCAL_RESTART_POLICY, *container]


def check_argv(project_root: PurePath, spec: LaunchSpec) -> list[str]:
    """The entrypoint's ``--dry-run`` in the same container set-up: validates the settings
    and TLS files as the cluster would, and exits 2 on what it would refuse."""
    argv = ["docker", "run", "--rm", "--network", "none"]
    argv += tls_mount(str(server_tls_dir(project_root, spec.instance)))
    env, _ = local_additions(project_root, spec, credentials=False)
    for key, value in (*container_env(spec), *env):
        argv += ["--env", f"{key}={value}"]
    return [*argv, spec.image.reference, "--dry-run"]


# The launch polls the container's state: connect and ping once per process (a failure
# raises, so it is not cached).
_client = functools.cache(docker_client)


def _container(name: str) -> Container | None:
    """The container called ``name``, or None."""
    try:
        return _client().containers.get(name)
    except docker.errors.NotFound:
        return None


def container_state(name: str) -> str | None:
    """``running``, ``exited``, ... or None when there is no such container."""
    container = _container(name)
    return None if container is None else str(container.status)


def project_containers(label: str) -> list[str]:
    """Names of the local daskbox containers a project launched (teardown without a file)."""
    found = _client().containers.list(
        all=True, filters={"label": f"{contract.CONTAINER_PROJECT_LABEL}={label}"}
    )
    return [str(container.name) for container in found]


def remove_container(name: str, echo: Progress | None = print) -> bool:
    """Force-remove ``name``; True if it existed."""
    container = _container(name)
    if container is None:
        return False
    if echo is not None:
        echo(f"removing container {name}")
    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        return False  # it went away meanwhile (e.g. `docker rm` by hand)
    except docker.errors.APIError as error:
        raise LocalLaunchError(
            f"Docker could not remove container {name} ({error.explanation}): "
            f"remove it with `docker rm --force {name}`"
        ) from None
    return True


def _docker_cli(argv: list[str], echo: Progress) -> subprocess.CompletedProcess[str]:
    """Print and run a docker CLI command (by the CLI's full path)."""
    found = shutil.which("docker")
    if found is None:
        raise DockerUnavailable(
            "the docker CLI is not installed (not on PATH): install Docker to use --local"
        )
    echo(f"$ {shlex.join(argv)}")
    return subprocess.run([found, *argv[1:]], capture_output=True, text=True, check=False)


def _hand_to_image_user(path: Path) -> None:
    """As root on POSIX, give the key to the image's user with mode 0600. Otherwise (no
    root, or Windows, which has neither ``os.geteuid`` nor ``os.chown``) leave it as is."""
    geteuid, chown = getattr(os, "geteuid", None), getattr(os, "chown", None)
    if geteuid is None or chown is None or geteuid() != 0:
        return
    chown(path, contract.IMAGE_UID, contract.IMAGE_UID)
    path.chmod(0o600)


def write_tls(project_root: Path, instance: str, server: ServerTLS) -> Path:
    """Write the server's TLS files for the container; return the folder to mount.

    The container reads them as the image's non-root user (uid ``IMAGE_UID``), which is not
    us. The mount's parent is private to us, so no other local user can reach the files
    (the container sees only the mounted folder, never its parents). As root we also hand
    the key to that uid with mode 0600; otherwise the key has to be readable by the
    container, still behind the private parent. On Windows the folder sits in the user's
    profile and Docker Desktop mounts it for the user: modes do not apply there.
    """
    folder = _mountable_folder(server_tls_dir(project_root, instance))
    files = (
        (contract.TLS_CA_FILE, server.ca_pem),
        (contract.TLS_CERT_FILE, server.cert_pem),
        (contract.TLS_KEY_FILE, server.key_pem),
    )
    for name, pem in files:
        path = write_atomically(folder / name, pem)
        if name == contract.TLS_KEY_FILE:
            _hand_to_image_user(path)
    return folder


def write_google_credentials(project_root: Path, instance: str) -> Path:
    """Copy the user's application-default credentials where the container can read them
    (the same protection as the server key); return the folder to mount."""
    source = application_default_credentials()
    folder = _mountable_folder(google_credentials_dir(project_root, instance))
    copy = write_atomically(
        folder / contract.GOOGLE_CREDENTIALS_FILE, source.read_text(encoding="utf-8")
    )
    _hand_to_image_user(copy)
    return folder


def _mountable_folder(folder: Path) -> Path:
    """``folder`` inside the launch's owner-only folder, itself open to the container's user."""
    private = folder.parent
    private.mkdir(mode=0o700, parents=True, exist_ok=True)
    private.chmod(0o700)
    folder.mkdir(exist_ok=True)
    folder.chmod(0o755)
    return folder


def _logs_tail(name: str, lines: int = 5) -> str:
    """The container's last ``lines`` log lines up to the entrypoint's last error, joined
    on one line, for an error message.

    The container is killed first: under ``--restart on-failure`` a new run may already be
    writing, and its first lines would push out the error that ended the run before.
    """
    container = _container(name)
    if container is None:
        return "no container"
    with contextlib.suppress(docker.errors.APIError):  # it may have exited already
        container.kill()
    text = container.logs().decode(errors="replace").strip().splitlines()
    prefix = contract.ENTRYPOINT_ERROR_PREFIX
    errors = [at for at, line in enumerate(text) if line.startswith(prefix)]
    if errors:
        text = text[: errors[-1] + 1]
    return " | ".join(text[-lines:]) or "no output"


def launch_local(
    project_root: Path,
    settings: LaunchSettings,
    spec: LaunchSpec,
    tls: LaunchTLS,
    *,
    echo: Progress = print,
) -> ConnectionFile:
    """Check, start the container, wait for the scheduler, write the connection file.

    The record (``state = "launching"``) is written first; on any failure or Ctrl-C the
    container, the TLS folder and the record are removed again (all of it is local).
    """
    name = spec.instance
    path = connection_path(project_root, name)
    if container_state(name) is not None or path.exists():
        raise LocalLaunchError(
            f"a local cluster {name} already exists: run `invoke teardown --local` first"
        )
    material = make_local_cluster(name, tls)
    server, client = material.server, material.client
    created_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

    def record(host: str | None, state: str) -> ConnectionFile:
        connection = connection_for(
            spec,
            client,
            target="local",
            host=host,
            created_at=created_at,
            state="ready" if state == "ready" else "launching",
        )
        write_atomically(path, connection.to_json(), private=True)
        return connection

    folder = tls_dir(project_root, name)
    try:
        record(None, "launching")
        write_tls(project_root, name, server)
        if settings.application_credentials:
            write_google_credentials(project_root, name)
        checked = _docker_cli(check_argv(project_root, spec), echo)
        if checked.returncode != 0:
            lines = [line for line in checked.stderr.strip().splitlines() if line.strip()]
            reason = lines[-1] if lines else f"exit code {checked.returncode}"
            raise LocalLaunchError(f"the cluster would not start: {reason}")
        argv = local_argv(project_root, spec, credentials=settings.application_credentials)
        started = _docker_cli(argv, echo)
        if started.returncode != 0:
            detail = " ".join(started.stderr.split())
            raise LocalLaunchError(f"docker could not start {spec.image.reference}: {detail}")
        address = f"tls://127.0.0.1:{spec.scheduler_port}"

        def stopped() -> str | None:
            state = container_state(name)
            return None if state in {"running", "created"} else f"container is {state}"

        if wait_for_scheduler(address, client, settings.timeout, echo, stopped) is None:
            state = container_state(name)
            what = (
                f"the scheduler at {address} did not answer within {settings.timeout:.0f} s"
                if state == "running"
                else f"container {name} stopped ({state}) before the scheduler answered"
            )
            raise LocalLaunchError(
                f"{what} (last log lines: {_logs_tail(name, 3)}): removed the container"
            )
        connection = record("127.0.0.1", "ready")
    except KeyboardInterrupt:
        _undo(name, folder, path)
        raise Interrupted(
            f"interrupted: rolled back the local launch of {name} (container, TLS folder, "
            "record); nothing is left"
        ) from None
    except BaseException:
        _undo(name, folder, path)
        raise
    echo(f"connection file: {path}")
    return connection


def _undo(name: str, folder: Path, path: Path) -> None:
    remove_container(name, echo=None)
    shutil.rmtree(folder, ignore_errors=True)
    path.unlink(missing_ok=True)
