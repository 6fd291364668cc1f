"""Fixtures for the gcloud tests: the Compute Engine emulator, gcloud pointed at it,
a throwaway Poetry project, and a small daskbox-shaped image pushed to the test registry.

The image is the entrypoint tests' minimal one (tests/entrypoint/image.py: the stand-in
base, distributed in /opt/venv, the entrypoint copied to /opt/daskbox, the images
component's non-root uid) plus the lock-hash variables and labels a real build sets, so
these tests do not depend on the images component's build.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from daskbox_services import Registry, free_port, running_registry

# This folder holds the emulator module; pytest only puts tests/ itself on sys.path here.
sys.path.insert(0, str(Path(__file__).parent))
from emulator import ComputeEmulator

from entrypoint.image import build_entrypoint_image

REPO_ROOT = Path(__file__).resolve().parents[2]
DASKBOX = REPO_ROOT / ".venv" / "bin" / "daskbox"


@dataclass(frozen=True)
class ClusterImage:
    """The pushed test image: tag reference, digest-pinned reference, lock hash."""

    reference: str
    pinned: str
    lock_hash: str


@pytest.fixture(scope="session")
def cluster_image(
    base_image: str,
    registry: Registry,
    registry_login: Path,
    docker_client: docker.DockerClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ClusterImage]:
    """A daskbox-shaped image in the test registry (removed from the engine afterwards)."""
    lock_hash = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    reference = build_entrypoint_image(
        docker_client,
        base_image,
        tmp_path_factory.mktemp("gcloud-image"),
        tag=f"{registry.host}/daskbox-gcloud-test:{lock_hash[:12]}",
        env={"DASKBOX_LOCK_HASH": lock_hash, "DASKBOX_GROUPS": "main"},
        labels={
            "dev.daskbox.lock-hash": lock_hash,
            "dev.daskbox.groups": "main",
            "dev.daskbox.extras": "fast",
        },
    )
    for line in docker_client.images.push(reference, stream=True, decode=True):
        if "error" in line:
            raise RuntimeError(line["error"])
    digest = docker_client.images.get(reference).attrs["RepoDigests"][0].split("@")[1]
    pinned = f"{reference.rsplit(':', 1)[0]}@{digest}"
    yield ClusterImage(reference, pinned, lock_hash)
    docker_client.images.remove(reference, force=True)


@pytest.fixture(scope="session")
def open_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry that serves pulls without credentials: a VM has credentials only for
    Artifact Registry, so the emulated VMs pull daskbox's test images from here."""
    with running_registry(tmp_path_factory.mktemp("open-registry")) as running:
        yield running


@pytest.fixture(scope="session")
def vm_image(
    cluster_image: ClusterImage, open_registry: Registry, docker_client: docker.DockerClient
) -> ClusterImage:
    """``cluster_image``, also pushed to ``open_registry``, where a VM can pull it."""
    reference = f"{open_registry.host}/daskbox-gcloud-test:{cluster_image.lock_hash[:12]}"
    docker_client.images.get(cluster_image.reference).tag(reference)
    for line in docker_client.images.push(reference, stream=True, decode=True):
        if "error" in line:
            raise RuntimeError(line["error"])
    digests = docker_client.images.get(reference).attrs["RepoDigests"]
    [digest] = [d.split("@")[1] for d in digests if d.startswith(open_registry.host)]
    return ClusterImage(
        reference, f"{reference.rsplit(':', 1)[0]}@{digest}", cluster_image.lock_hash
    )


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[ComputeEmulator]:
    with ComputeEmulator(tmp_path / "emulator") as running:
        yield running


@pytest.fixture
def gcloud_env(emulator: ComputeEmulator, tmp_path: Path) -> dict[str, str]:
    """Environment for gcloud talking to the emulator with credentials disabled."""
    return {
        **os.environ,
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud-config"),
        "CLOUDSDK_CORE_PROJECT": "test-project",
        "CLOUDSDK_AUTH_DISABLE_CREDENTIALS": "true",
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE": emulator.base,
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "1",
        # Public-IP detection must never leave loopback: point it at a closed port.
        "DASKBOX_IP_ECHO_URL": f"http://127.0.0.1:{free_port()}/",
    }


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A minimal project with unique ports and instance name (tests may run side by side)."""
    root = tmp_path / "demo"
    root.mkdir()
    suffix = uuid.uuid4().hex[:6]
    scheduler, dashboard = free_port(), free_port()
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "demo-{suffix}"\nversion = "0.1.0"\n\n'
        f"[tool.daskbox.gcloud]\n"
        f'instance = "daskbox-gcloud-test-{suffix}"\n'
        f"scheduler-port = {scheduler}\n"
        f"dashboard-port = {dashboard}\n"
        f'idle-timeout = "0"\n'
        f"timeout = 120\n"
        # The test registries listen on 127.0.0.1, which the emulated VMs (this host) reach:
        # the explicit opt-in a real project would give for a registry inside its VPC.
        f"allow-private-registry = true\n"
    )
    return root


def daskbox(
    project: Path, env: dict[str, str] | None, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the real ``daskbox`` program (the invoke collection) in ``project``."""
    result = subprocess.run(
        [str(DASKBOX), *args], cwd=project, env=env, capture_output=True, text=True, timeout=300
    )
    if check and result.returncode != 0:
        raise AssertionError(f"daskbox {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result
