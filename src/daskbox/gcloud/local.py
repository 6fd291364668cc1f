"""The local target: the VM's container, run by the local Docker engine.

Same ``docker run`` argv as the VM's cloud-init (``spec.docker_run_argv``): host network,
the same environment, the TLS folder mounted read-only at the same path, the same
restart policy. Only the container name and the TLS folder's host path differ. That one
command runs through the docker CLI, so what is printed is exactly what the VM runs;
everything else (inspect, logs, remove) goes through the Docker Engine API.
"""

from __future__ import annotations

import datetime
import functools
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import docker
import docker.errors
from docker.models.containers import Container

from daskbox._docker import docker_client
from daskbox._tasks import Progress
from daskbox.client.connection import (
    ConnectionFile,
    connection_dir,
    connection_path,
    write_connection_file,
)
from daskbox.contract import (
    ENV_GOOGLE_CREDENTIALS,
    ENV_LISTEN_HOST,
    GOOGLE_CREDENTIALS_DIR,
    GOOGLE_CREDENTIALS_FILE,
    IMAGE_UID,
    LOOPBACK,
    TLS_KEY_FILE,
)
from daskbox.errors import DaskboxError, DockerUnavailable
from daskbox.gcloud.ready import wait_for_scheduler
from daskbox.gcloud.settings import LaunchSettings
from daskbox.gcloud.spec import (
    LaunchSpec,
    connection_for,
    docker_run_argv,
    tls_files,
)
from daskbox.gcloud.tls import TLSMaterial


class LocalLaunchError(DaskboxError):
    """The local container could not be started or never answered."""


def tls_dir(project_root: Path, instance: str) -> Path:
    """Host folder of one local launch's TLS material (mode 0700, removed on teardown)."""
    return connection_dir(project_root) / f"{instance}.tls"


def server_tls_dir(project_root: Path, instance: str) -> Path:
    """The folder mounted into the container: the server's files, inside ``tls_dir``."""
    return tls_dir(project_root, instance) / "server"


def google_credentials_dir(project_root: Path, instance: str) -> Path:
    """The folder mounted when asked: a copy of the user's application-default credentials."""
    return tls_dir(project_root, instance) / "google"


def application_default_credentials() -> Path:
    """The file Google's client libraries read as the user's application-default credentials.

    The same search as google-auth: ``GOOGLE_APPLICATION_CREDENTIALS``, then gcloud's
    configuration folder (``CLOUDSDK_CONFIG``, ``%APPDATA%\\gcloud`` on Windows,
    ``~/.config/gcloud`` elsewhere).
    """
    explicit = os.environ.get(ENV_GOOGLE_CREDENTIALS)
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
        path = folder / GOOGLE_CREDENTIALS_FILE
    if not path.is_file():
        raise LocalLaunchError(
            f"no application-default credentials at {path}: run "
            "`gcloud auth application-default login`, or launch without --application-credentials"
        )
    return path


def local_argv(project_root: Path, spec: LaunchSpec, *, credentials: bool = False) -> list[str]:
    """The VM's ``docker run``, with the local TLS folder and the instance as container name.

    On a laptop, host networking would put every port on the LAN: the entrypoint listens
    on loopback only. With ``credentials`` the copy of the user's application-default
    credentials is mounted read-only, and Google's libraries are pointed at it.
    """
    env: tuple[tuple[str, str], ...] = ((ENV_LISTEN_HOST, LOOPBACK),)
    volumes: tuple[str, ...] = ()
    if credentials:
        folder = google_credentials_dir(project_root, spec.instance)
        volumes = (f"{folder}:{GOOGLE_CREDENTIALS_DIR}",)
        env += ((ENV_GOOGLE_CREDENTIALS, f"{GOOGLE_CREDENTIALS_DIR}/{GOOGLE_CREDENTIALS_FILE}"),)
    return docker_run_argv(
        spec,
        tls_dir=str(server_tls_dir(project_root, spec.instance)),
        name=spec.instance,
        env=env,
        volumes=volumes,
    )


# The launch polls the container's state every second: connect and ping once per process
# (a failure raises, so it is not cached).
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


def _docker_run(argv: list[str], echo: Progress) -> subprocess.CompletedProcess[str]:
    """Print and run the ``docker run`` argv through the CLI (what the VM runs, verbatim)."""
    if shutil.which("docker") is None:
        raise DockerUnavailable(
            "the docker CLI is not installed (not on PATH): install Docker to use --local"
        )
    echo(f"$ {shlex.join(argv)}")
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def write_tls(project_root: Path, spec: LaunchSpec) -> Path:
    """Write the server's TLS files for the container; return the folder to mount.

    The container reads them as the image's non-root user (uid ``IMAGE_UID``), which is not
    us. The mount's parent is 0700, so no other local user can reach the files (the
    container sees only the mounted folder, never its parents). As root we also hand the
    key to that uid with mode 0600; otherwise the key has to be 0644 for the container
    to read it, still behind the 0700 parent.
    """
    folder = _mountable_folder(server_tls_dir(project_root, spec.instance))
    for name, pem in tls_files(spec):
        path = folder / name
        path.write_text(pem, encoding="utf-8")
        _readable_by_the_image(path, secret=name == TLS_KEY_FILE)
    return folder


def write_google_credentials(project_root: Path, instance: str) -> Path:
    """Copy the user's application-default credentials where the container can read them
    (the same protection as the server key); return the folder to mount."""
    source = application_default_credentials()
    folder = _mountable_folder(google_credentials_dir(project_root, instance))
    copy = folder / GOOGLE_CREDENTIALS_FILE
    shutil.copyfile(source, copy)
    _readable_by_the_image(copy, secret=True)
    return folder


def _mountable_folder(folder: Path) -> Path:
    """``folder`` inside the launch's 0700 folder, itself open to the container's user."""
    private = folder.parent
    private.mkdir(mode=0o700, parents=True, exist_ok=True)
    private.chmod(0o700)
    folder.mkdir(exist_ok=True)
    folder.chmod(0o755)
    return folder


def _readable_by_the_image(path: Path, *, secret: bool) -> None:
    """Let the image's user (uid IMAGE_UID) read ``path``: a secret becomes its own 0600
    file when we are root, else 0644 behind the 0700 parent (see ``write_tls``)."""
    if secret and os.geteuid() == 0:
        os.chown(path, IMAGE_UID, IMAGE_UID)
        path.chmod(0o600)
    else:
        path.chmod(0o644)


def _logs_tail(name: str, lines: int = 5) -> str:
    """The container's last ``lines`` log lines joined on one line, for an error message."""
    container = _container(name)
    if container is None:
        return "no container"
    text = container.logs(tail=lines).decode(errors="replace").strip().splitlines()
    return " | ".join(text[-lines:]) or "no output"


def launch_local(
    project_root: Path,
    settings: LaunchSettings,
    spec: LaunchSpec,
    tls: TLSMaterial,
    *,
    echo: Progress = print,
) -> ConnectionFile:
    """Start the container, wait for the scheduler, write the connection file.

    On any failure the container and the TLS folder are removed again.
    """
    name = spec.instance
    if container_state(name) is not None:
        raise LocalLaunchError(
            f"a local cluster {name} already exists: run `invoke teardown --local` first"
        )
    folder = tls_dir(project_root, name)
    try:
        write_tls(project_root, spec)
        if settings.application_credentials:
            write_google_credentials(project_root, name)
        argv = local_argv(project_root, spec, credentials=settings.application_credentials)
        result = _docker_run(argv, echo)
        if result.returncode != 0:
            detail = " ".join(result.stderr.split())
            raise LocalLaunchError(f"docker could not start {spec.image.reference}: {detail}")
        address = f"tls://127.0.0.1:{spec.scheduler_port}"

        def stopped() -> str | None:
            state = container_state(name)
            return None if state in {"running", "created"} else f"container is {state}"

        if wait_for_scheduler(address, tls.client, settings.timeout, echo, stopped) is None:
            state = container_state(name)
            what = (
                f"the scheduler at {address} did not answer within {settings.timeout:.0f} s"
                if state == "running"
                else f"container {name} stopped ({state}) before the scheduler answered"
            )
            raise LocalLaunchError(
                f"{what} (last log lines: {_logs_tail(name, 3)}): removed the container"
            )
    except BaseException:
        remove_container(name, echo=None)
        shutil.rmtree(folder, ignore_errors=True)
        raise
    created_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    connection = connection_for(
        spec, tls.client, target="local", host="127.0.0.1", created_at=created_at
    )
    path = write_connection_file(connection_path(project_root, name), connection)
    echo(f"connection file: {path}")
    return connection
