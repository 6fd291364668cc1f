"""Fixtures for the gcloud tests: the Compute Engine emulator, gcloud pointed at it,
a throwaway Poetry project, and a fixture project's image pushed to the test registry
(built by daskbox's own pipeline, see tests/pipeline_image.py)."""

from __future__ import annotations

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
from pipeline_image import PipelineImage, build_fixture_image

# This folder holds the emulator module; pytest only puts tests/ itself on sys.path here.
sys.path.insert(0, str(Path(__file__).parent))
from emulator import ComputeEmulator

REPO_ROOT = Path(__file__).resolve().parents[2]
DASKBOX = Path(sys.executable).parent / "daskbox"


@pytest.fixture(scope="session")
def cluster_image(
    base_image: str,
    registry: Registry,
    registry_login: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> PipelineImage:
    """A fixture project's image, built and pushed to the test registry by the pipeline."""
    return build_fixture_image(
        tmp_path_factory.mktemp("gcloud-image"),
        f"{registry.host}/daskbox-gcloud-test",
        push=True,
    )


@pytest.fixture(scope="session")
def open_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry that serves pulls without credentials: a VM has credentials only for
    Artifact Registry, so the emulated VMs pull daskbox's test images from here."""
    with running_registry(tmp_path_factory.mktemp("open-registry")) as running:
        yield running


@dataclass(frozen=True)
class VmImage:
    """The cluster image where an emulated VM can pull it: tag and digest-pinned reference."""

    reference: str
    pinned: str
    lock_hash: str


@pytest.fixture(scope="session")
def vm_image(
    cluster_image: PipelineImage, open_registry: Registry, docker_client: docker.DockerClient
) -> VmImage:
    """``cluster_image``, also pushed to ``open_registry``, where a VM can pull it."""
    reference = f"{open_registry.host}/daskbox-gcloud-test:{cluster_image.lock_hash[:12]}"
    docker_client.images.get(cluster_image.reference).tag(reference)
    for line in docker_client.images.push(reference, stream=True, decode=True):
        if "error" in line:
            raise RuntimeError(line["error"])
    digests = docker_client.images.get(reference).attrs["RepoDigests"]
    [digest] = [d.split("@")[1] for d in digests if d.startswith(open_registry.host)]
    return VmImage(reference, f"{reference.rsplit(':', 1)[0]}@{digest}", cluster_image.lock_hash)


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
