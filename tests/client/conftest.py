"""Fixtures for the client tests: a project, image-like environments, real TLS clusters.

The project is a copy of daskbox's own pyproject.toml + poetry.lock, because the test
process's interpreter (.venv) is installed from exactly that lock: it plays the user's
local environment. The "older" project is the same lock with one package (toolz) moved
to another release, re-hashed from the real wheel, as if the image had been built before
a ``poetry update toolz``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import tomlkit
from distributed import Client
from distributed.versions import VersionMismatchWarning
from packaging.utils import canonicalize_name

from client.client_clusters import (
    REPO_ROOT,
    ImageLikeEnvironment,
    TLSCluster,
    build_environment,
    copy_project,
)
from daskbox.client.connect import security_for
from daskbox.client.connection import read_connection_file
from daskbox.gcloud.tls import TLSMaterial, make_tls_material
from daskbox.record import ImageRecord
from daskbox_services import free_port

CHANGED_PACKAGE = "toolz"
# A release other than the locked one; resolved through pip's ordinary index configuration.
OTHER_RELEASE = "1.1.0"
# A CPython with another patch version than the test interpreter (Debian's, 3.11.2 here).
OTHER_PATCH_PYTHON = "/usr/bin/python3.11"


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local project: daskbox's own lock, which .venv (this interpreter) is synced to."""
    return copy_project(REPO_ROOT, tmp_path_factory.mktemp("client-project"))


@pytest.fixture(scope="session")
def older_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project before a ``poetry update toolz``: only toolz's entry differs."""
    root = copy_project(REPO_ROOT, tmp_path_factory.mktemp("client-older-project"))
    assert importlib.metadata.version(CHANGED_PACKAGE) != OTHER_RELEASE
    wheels = root / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--disable-pip-version-check",
            "--only-binary=:all:",
            "-d",
            str(wheels),
            f"{CHANGED_PACKAGE}=={OTHER_RELEASE}",
        ],
        check=True,
    )
    (wheel,) = wheels.glob("*.whl")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    lock_path = root / "poetry.lock"
    lock = tomlkit.parse(lock_path.read_text(encoding="utf-8"))
    (entry,) = [p for p in lock["package"] if p["name"] == CHANGED_PACKAGE]
    entry["version"] = OTHER_RELEASE
    files = tomlkit.array()
    files.append(tomlkit.inline_table())
    files[0].update({"file": wheel.name, "hash": f"sha256:{digest}"})
    entry["files"] = files
    lock_path.write_text(tomlkit.dumps(lock), encoding="utf-8")
    shutil.rmtree(wheels)
    return root


@pytest.fixture(scope="session")
def current_environment(
    project: Path, tmp_path_factory: pytest.TempPathFactory
) -> ImageLikeEnvironment:
    """What the image built from the local lock holds."""
    return build_environment(tmp_path_factory.mktemp("env-current"), project, sys.executable)


@pytest.fixture(scope="session")
def older_environment(
    older_project: Path, tmp_path_factory: pytest.TempPathFactory
) -> ImageLikeEnvironment:
    """What an image built from the older lock holds."""
    return build_environment(tmp_path_factory.mktemp("env-older"), older_project, sys.executable)


@pytest.fixture(scope="session")
def other_patch_environment(
    project: Path, tmp_path_factory: pytest.TempPathFactory
) -> ImageLikeEnvironment:
    """The local lock's set, on a CPython whose patch version differs from this one."""
    if not Path(OTHER_PATCH_PYTHON).exists():
        pytest.skip(f"{OTHER_PATCH_PYTHON} is not installed")
    return build_environment(tmp_path_factory.mktemp("env-patch"), project, OTHER_PATCH_PYTHON)


@pytest.fixture(scope="session")
def tls_material() -> TLSMaterial:
    return make_tls_material("client-tests")


def wait_for_workers(connection_file: Path, count: int, cluster: TLSCluster) -> None:
    """Block until ``count`` workers are up (a plain Client, no environment check)."""
    connection = read_connection_file(connection_file)
    deadline = time.monotonic() + 90
    while True:
        try:
            with warnings.catch_warnings():
                # distributed's own, partial version check: not what these tests look at.
                warnings.simplefilter("ignore", VersionMismatchWarning)
                client = Client(
                    connection.scheduler_address, security=security_for(connection), timeout=5
                )
            with client:
                client.wait_for_workers(count, timeout=max(1, deadline - time.monotonic()))
                return
        except (OSError, TimeoutError) as error:
            if time.monotonic() > deadline:
                raise AssertionError(f"cluster did not start: {error}\n{cluster.logs()}") from None
            time.sleep(0.5)


def table_rows(message: str) -> list[list[str]]:
    """The mismatch table's rows (after the header), split on runs of two or more spaces."""
    lines = message.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["package", "local"])
    rows = []
    for line in lines[start + 1 :]:
        if not line.startswith("  ") or line.startswith("      "):
            break
        rows.append([cell.strip() for cell in line.strip().split("  ") if cell.strip()])
    return rows


@contextlib.contextmanager
def running_dashboard(*args: str, cwd: Path | None = None) -> Iterator[tuple[int, str]]:
    """``daskbox dashboard ARGS --port <free> --no-browser`` until the block ends (Ctrl-C);
    yields the port and the line it printed."""
    port = free_port()
    process = subprocess.Popen(
        [
            Path(sys.executable).parent / "daskbox",
            "dashboard",
            *args,
            "--port",
            str(port),
            "--no-browser",
        ],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield port, process.stdout.readline()
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0 and "Traceback" not in stderr, stderr


def synced_site(record: ImageRecord, site: Path) -> Path:
    """``site`` holding the image's locked distributions this interpreter lacks (pip
    --target, no dependencies): with it on sys.path, this session has the whole locked set,
    as a laptop has after ``poetry sync``."""
    installed = {canonicalize_name(d.metadata["Name"]) for d in importlib.metadata.distributions()}
    missing = [
        f"{name}=={version}"
        for name, version in record.image_distributions.items()
        if name not in installed
    ]
    site.mkdir(parents=True, exist_ok=True)
    if missing:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--target",
                str(site),
                "--disable-pip-version-check",
                *missing,
            ],
            check=True,
        )
    return site


def connect_in_a_session(path: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """``connect()`` from this interpreter with ``site`` also on sys.path (its packages count)."""
    python_path = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from daskbox import connect; connect(path=sys.argv[1]).close()",
            str(path),
        ],
        env={**os.environ, "PYTHONPATH": python_path},
        capture_output=True,
        text=True,
        check=False,
    )


ClusterFactory = Callable[..., tuple[TLSCluster, Path]]


@pytest.fixture
def tls_cluster(
    project: Path, tls_material: TLSMaterial, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[ClusterFactory]:
    """Start a cluster: scheduler and ``workers`` from one environment; returns (cluster, file)."""
    started: list[TLSCluster] = []
    written: list[Path] = []

    def start(
        environment: ImageLikeEnvironment, workers: int = 2, in_project: Path = project
    ) -> tuple[TLSCluster, Path]:
        name = f"client-{request.node.name[:40]}-{len(started)}".replace("[", "-").replace("]", "")
        cluster = TLSCluster(name, tmp_path, tls_material)
        started.append(cluster)
        cluster.start_scheduler(environment)
        if workers:
            cluster.start_workers(environment, workers, "initial")
        path = cluster.write_connection_file(in_project, environment)
        written.append(path)
        wait_for_workers(path, workers, cluster)
        return cluster, path

    yield start
    for cluster in started:
        cluster.stop()
    for path in written:
        path.unlink(missing_ok=True)
