"""The local target: the VM's container, run by the local Docker engine.

Same ``docker run`` argv as the VM's cloud-init (``spec.docker_run_argv``): host network,
the same environment, the TLS folder mounted read-only at the same path, the same
restart policy. Only the container name and the TLS folder's host path differ.
"""

from __future__ import annotations

import datetime
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from daskbox.client.connection import (
    ConnectionFile,
    connection_dir,
    connection_path,
    write_connection_file,
)
from daskbox.errors import DaskboxError, ImageBuildError
from daskbox.gcloud._gcloud import Echo
from daskbox.gcloud.ready import wait_for_scheduler
from daskbox.gcloud.settings import LaunchSettings
from daskbox.gcloud.spec import LaunchSpec, docker_run_argv, tls_files
from daskbox.gcloud.tls import TLSMaterial


class LocalLaunchError(DaskboxError):
    """The local container could not be started or never answered."""


def tls_dir(project_root: Path, instance: str) -> Path:
    """Host folder holding the server's TLS files for the local container."""
    return connection_dir(project_root) / f"{instance}.tls"


def local_argv(project_root: Path, spec: LaunchSpec) -> list[str]:
    """The VM's ``docker run``, with the local TLS folder and the instance as container name."""
    return docker_run_argv(
        spec, tls_dir=str(tls_dir(project_root, spec.instance)), name=spec.instance
    )


def _docker(argv: Sequence[str], echo: Echo | None = None) -> subprocess.CompletedProcess[str]:
    if shutil.which("docker") is None:
        raise ImageBuildError("the docker CLI is not installed: install Docker")
    if echo is not None:
        echo(f"$ {shlex.join(argv)}")
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


def container_state(name: str) -> str | None:
    """``running``, ``exited``, ... or None when there is no such container."""
    result = _docker(["docker", "container", "inspect", "--format", "{{.State.Status}}", name])
    return result.stdout.strip() if result.returncode == 0 else None


def remove_container(name: str, echo: Echo | None = print) -> bool:
    """Force-remove ``name``; True if it existed."""
    if container_state(name) is None:
        return False
    _docker(["docker", "rm", "--force", name], echo)
    return True


def _write_tls(folder: Path, spec: LaunchSpec) -> None:
    # The container's non-root user must read these through the bind mount, and its uid
    # is not ours: world-readable files in a folder only this launch uses, removed on
    # teardown (the key is worthless after it: every launch has a new CA).
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    for name, pem in tls_files(spec):
        path = folder / name
        path.write_text(pem, encoding="utf-8")
        path.chmod(0o644)


def _logs_tail(name: str, lines: int = 5) -> str:
    result = _docker(["docker", "logs", "--tail", str(lines), name])
    text = (result.stdout + result.stderr).strip().splitlines()
    return " | ".join(text[-lines:]) or "no output"


def launch_local(
    project_root: Path,
    settings: LaunchSettings,
    spec: LaunchSpec,
    tls: TLSMaterial,
    *,
    echo: Echo = print,
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
        _write_tls(folder, spec)
        result = _docker(local_argv(project_root, spec), echo)
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
    connection = ConnectionFile(
        instance=name,
        target="local",
        scheduler_address=address,
        dashboard_url=f"http://127.0.0.1:{spec.dashboard_port}/status",
        image=spec.image.reference,
        lock_hash=spec.image.lock_hash,
        groups=spec.image.groups,
        tls=tls.client,
        created_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        extra={"container": name},
    )
    path = write_connection_file(connection_path(project_root, name), connection)
    echo(f"connection file: {path}")
    return connection
