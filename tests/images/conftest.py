"""Helpers for the images tests; the services (engine, base image, registry) come from
tests/conftest.py: ``docker_client``, ``base_image``, ``registry``, ``registry_login``."""

from __future__ import annotations

import base64
import json
import shutil
import urllib.request
from pathlib import Path

import docker

from daskbox_services import Registry

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "projects"
REPO_ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = REPO_ROOT / "examples" / "quickstart"


def registry_get(registry: Registry, path: str, accept: str | None = None) -> bytes:
    """GET a registry API path with basic auth (to read manifests and image configs)."""
    request = urllib.request.Request(f"{registry.url}{path}")
    token = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    if accept:
        request.add_header("Accept", accept)
    with urllib.request.urlopen(request, timeout=10) as response:
        return bytes(response.read())


def docker_config_dir(path: Path, registry: Registry, password: str) -> Path:
    """A throwaway DOCKER_CONFIG holding a login for ``registry`` with ``password``."""
    path.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{registry.username}:{password}".encode()).decode()
    (path / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
    return path


def copy_project(name: str, destination: Path, repository: str | None = None) -> Path:
    """Copy a fixture project (or the quickstart) so tests may edit it and write caches.

    ``name`` may point inside a fixture ("path_dependency/app"): the whole fixture is copied.
    """
    top = name.partition("/")[0]
    source = QUICKSTART if name == "quickstart" else FIXTURES / top
    shutil.copytree(
        source, destination / top, ignore=shutil.ignore_patterns(".daskbox", "__pycache__")
    )
    target = destination / name
    if repository is not None:
        pyproject = target / "pyproject.toml"
        lines = [
            line for line in pyproject.read_text().splitlines() if not line.startswith("repository")
        ]
        if "[tool.daskbox]" not in lines:
            lines += ["", "[tool.daskbox]"]
        at = lines.index("[tool.daskbox]") + 1
        lines.insert(at, f'repository = "{repository}"')
        pyproject.write_text("\n".join(lines) + "\n")
    return target


def remove_repository_images(client: docker.DockerClient, repository: str) -> None:
    for image in client.images.list(name=repository):
        for tag in image.tags:
            client.images.remove(tag, force=True)
