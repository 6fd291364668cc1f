"""Real Dask clusters whose environments are built the way the image builds its own.

An ``ImageLikeEnvironment`` is a fresh venv holding exactly a lock's exported set for the
image groups (installed with ``pip --require-hashes`` from daskbox's own export), plus
daskbox's entrypoint package copied (not installed) onto PYTHONPATH and the image's
lock-hash and groups variables: what ``importlib.metadata`` sees inside the
image, without Docker. ``TLSCluster`` runs ``dask scheduler`` / ``dask worker`` processes from
such environments over TLS and writes the connection file ``connect()`` reads.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from daskbox import contract
from daskbox.client.connection import ConnectionFile, connection_path, write_connection_file
from daskbox.gcloud.tls import TLSMaterial
from daskbox.images.environment import Platform
from daskbox.images.lock import export_environment
from daskbox.images.pipeline import image_entrypoint_files
from daskbox.record import ImageRecord
from daskbox_services import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURE_PROJECTS = REPO_ROOT / "tests" / "fixtures" / "projects"


def copy_project(source: Path, destination: Path) -> Path:
    """Copy a project's pyproject.toml and poetry.lock (all the check reads) to ``destination``."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in ("pyproject.toml", "poetry.lock"):
        shutil.copy2(source / name, destination / name)
    return destination


@dataclass(frozen=True)
class ImageLikeEnvironment:
    """A venv + copied entrypoint + image variables, like /opt/venv and /opt/daskbox."""

    root: Path
    python: Path
    record: ImageRecord  # what build + push would have handed to launch

    @property
    def lock_hash(self) -> str:
        return self.record.lock_hash

    @property
    def groups(self) -> tuple[str, ...]:
        return self.record.groups

    @property
    def extras(self) -> tuple[str, ...]:
        return self.record.extras

    @property
    def code(self) -> Path:
        """The PYTHONPATH folder, like the image's /opt/daskbox."""
        return self.root / "code"

    def process_env(self) -> dict[str, str]:
        """This process's environment minus venv/path settings, plus the image's variables."""
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
        }
        env.update(
            {
                "PYTHONPATH": str(self.code),
                contract.ENV_LOCK_HASH: self.lock_hash,
                contract.ENV_GROUPS: ",".join(self.groups),
            }
        )
        return env


def build_environment(
    root: Path,
    project: Path,
    base_python: str,
    groups: tuple[str, ...] = ("main",),
    source_packages: tuple[Path, ...] = (),
    extras: tuple[str, ...] = (),
) -> ImageLikeEnvironment:
    """Create ``root`` holding ``project``'s locked ``groups`` and ``extras`` for ``base_python``.

    ``source_packages`` (the project's own import packages) are copied next to the
    entrypoint, importable but not installed distributions.
    """
    venv = root / "venv"
    subprocess.run([base_python, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    exported = export_environment(project, Platform.local(), groups, extras)
    requirements = root / "requirements.txt"
    requirements.write_text(exported.requirements_txt(), encoding="utf-8")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-compile",
            "--require-hashes",
            "--disable-pip-version-check",
            "-r",
            str(requirements),
        ],
        check=True,
    )
    # The very files the image gets under /opt/daskbox (entrypoint + minimal __init__.py).
    code = root / "code"
    for name, data in image_entrypoint_files():
        (code / name).parent.mkdir(parents=True, exist_ok=True)
        (code / name).write_bytes(data)
    for package in source_packages:
        shutil.copytree(package, code / package.name, ignore=shutil.ignore_patterns("__pycache__"))
    installed = {str(r.name): r.version or "" for r in exported.requirements}
    record = exported.image_record(
        reference=f"localhost/client-tests:{root.name}", image_id="", installed=installed
    )
    # Unlike an image, this environment does not install the project itself.
    project_itself = str(exported.project_name)
    record = dataclasses.replace(
        record, locked=tuple(d for d in record.locked if d.name != project_itself)
    )
    return ImageLikeEnvironment(root, python, record)


@dataclass
class TLSCluster:
    """A scheduler and workers as separate processes, each from a chosen environment."""

    name: str
    workdir: Path
    tls: TLSMaterial
    port: int = field(default_factory=free_port)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def address(self) -> str:
        """The scheduler's tls:// address."""
        return f"tls://127.0.0.1:{self.port}"

    def _tls_args(self) -> list[str]:
        files = {
            "ca": self.tls.server.ca_pem,
            "cert": self.tls.server.cert_pem,
            "key": self.tls.server.key_pem,
        }
        args = []
        for kind, pem in files.items():
            path = self.workdir / f"server-{kind}.pem"
            path.write_text(pem, encoding="utf-8")
            path.chmod(0o600)
            flag = "--tls-ca-file" if kind == "ca" else f"--tls-{kind}"
            args += [flag, str(path)]
        return args

    def _start(self, environment: ImageLikeEnvironment, argv: list[str], log: str) -> None:
        with (self.workdir / log).open("ab") as output:
            process = subprocess.Popen(
                [str(environment.python), "-m", *argv, *self._tls_args()],
                env=environment.process_env(),
                cwd=self.workdir,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(process)

    def start_scheduler(self, environment: ImageLikeEnvironment) -> None:
        """Start ``dask scheduler`` from ``environment`` (log: scheduler.log)."""
        self._start(
            environment,
            [
                "distributed.cli.dask_scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--protocol",
                "tls",
                "--no-dashboard",
            ],
            "scheduler.log",
        )

    def start_workers(self, environment: ImageLikeEnvironment, count: int, name: str) -> None:
        """Start ``count`` one-thread workers named ``name`` from ``environment``."""
        self._start(
            environment,
            [
                "distributed.cli.dask_worker",
                self.address,
                "--host",
                "127.0.0.1",
                "--nworkers",
                str(count),
                "--nthreads",
                "1",
                "--name",
                name,
                "--no-dashboard",
                "--memory-limit",
                "1GiB",
            ],
            f"workers-{name}.log",
        )

    def write_connection_file(self, project: Path, environment: ImageLikeEnvironment) -> Path:
        """What launch writes for an image of ``environment``."""
        connection = ConnectionFile(
            instance=self.name,
            target="local",
            scheduler_address=self.address,
            dashboard_url="",
            image=f"localhost/client-tests:{self.name}",
            lock_hash=environment.lock_hash,
            groups=environment.groups,
            extras=environment.extras,
            tls=self.tls.client,
            record=environment.record,
        )
        return write_connection_file(connection_path(project, self.name), connection)

    def logs(self) -> str:
        """Every process's log, for a failing test's message."""
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')}"
            for path in sorted(self.workdir.glob("*.log"))
        )

    def stop(self) -> None:
        """Terminate every process (killing those still running after 20 s)."""
        for process in reversed(self.processes):
            process.terminate()
        deadline = time.monotonic() + 20
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
