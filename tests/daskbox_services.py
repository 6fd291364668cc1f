"""Real services for the tests: a Docker registry with htpasswd auth, free ports.

Kept apart from conftest.py so benchmarks and scripts can start the same services.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

REGISTRY_BINARY = "docker-registry"  # Debian's package of distribution/distribution


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Registry:
    """A running registry on loopback; ``host`` is what goes in image names."""

    host: str
    username: str | None
    password: str | None
    storage: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}"


def _wait_until_answering(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url + "/v2/", timeout=1)
            return
        except urllib.error.HTTPError:
            return  # 401 means it is up and asking for credentials
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"docker-registry did not answer on {url}: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def running_registry(
    workdir: Path, username: str | None = None, password: str | None = None
) -> Iterator[Registry]:
    """Start Debian's docker-registry on 127.0.0.1:<free port>, with htpasswd auth if asked."""
    if shutil.which(REGISTRY_BINARY) is None:
        raise RuntimeError("docker-registry is not installed: apt-get install docker-registry")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    # YAML is a superset of JSON, so the registry's config.yml can be written as JSON.
    config: dict[str, object] = {
        "version": "0.1",
        "log": {"level": "warn"},
        "storage": {
            "filesystem": {"rootdirectory": str(workdir / "data")},
            "delete": {"enabled": True},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": "daskbox-tests"},
    }
    if username is not None and password is not None:
        htpasswd = subprocess.run(
            ["htpasswd", "-Bbn", username, password], check=True, capture_output=True, text=True
        ).stdout
        (workdir / "htpasswd").write_text(htpasswd)
        config["auth"] = {"htpasswd": {"realm": "daskbox-tests", "path": str(workdir / "htpasswd")}}
    config_file = workdir / "config.yml"
    config_file.write_text(json.dumps(config, indent=2))
    log = workdir / "registry.log"
    with log.open("wb") as stream:
        process = subprocess.Popen(
            [REGISTRY_BINARY, "serve", str(config_file)], stdout=stream, stderr=stream
        )
    try:
        _wait_until_answering(f"http://127.0.0.1:{port}", process, log)
        yield Registry(f"127.0.0.1:{port}", username, password, workdir / "data")
    finally:
        process.terminate()
        process.wait(timeout=10)


def docker_login(registry: Registry, docker_config: Path) -> None:
    """``docker login`` into a private DOCKER_CONFIG (the user's own config is never touched)."""
    docker_config.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "docker",
            "--config",
            str(docker_config),
            "login",
            "--username",
            str(registry.username),
            "--password-stdin",
            registry.host,
        ],
        input=str(registry.password),
        text=True,
        check=True,
        capture_output=True,
    )


def push_platform_index(registry: Registry, name: str, images: dict[str, str], client: Any) -> str:
    """Push local ``images`` (platform -> local image) to ``registry`` under one
    multi-platform tag ``name`` (``repo:tag``), as the official ``python:*`` tags are, and
    return the index's digest. The engine pushes each platform's image; the index is PUT
    through the registry API (``docker manifest`` is experimental on older CLIs)."""
    repository, _, tag = name.partition(":")
    auth = (registry.username, registry.password) if registry.username else None
    entries = []
    for platform, image in images.items():
        platform_tag = f"{tag}-{platform.replace('/', '-')}"
        client.api.tag(image, f"{registry.host}/{repository}", platform_tag)
        try:
            for chunk in client.api.push(
                f"{registry.host}/{repository}", tag=platform_tag, stream=True, decode=True
            ):
                if "error" in chunk:
                    raise RuntimeError(f"push of {platform_tag} failed: {chunk['error']}")
        finally:
            # The registry's name only: the local image (often a stand-in base) stays.
            client.api.remove_image(f"{registry.host}/{repository}:{platform_tag}")
        response = requests.get(
            f"{registry.url}/v2/{repository}/manifests/{platform_tag}",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
            auth=auth,
            timeout=30,
        )
        response.raise_for_status()
        os_name, architecture = platform.split("/")
        entries.append(
            {
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "digest": response.headers["Docker-Content-Digest"],
                "size": len(response.content),
                "platform": {"architecture": architecture, "os": os_name},
            }
        )
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": entries,
    }
    put = requests.put(
        f"{registry.url}/v2/{repository}/manifests/{tag}",
        data=json.dumps(index),
        headers={"Content-Type": index["mediaType"]},
        auth=auth,
        timeout=30,
    )
    put.raise_for_status()
    return str(put.headers["Docker-Content-Digest"])
