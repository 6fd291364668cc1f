"""The one way every component reaches the Docker engine, and how its errors read.

The images pipeline builds and pushes through it, the local target runs containers through
it; a missing engine is one ``DockerUnavailable`` line wherever it is noticed.
[side effects: Docker]
"""

from __future__ import annotations

import docker
import docker.errors

from daskbox.errors import DockerUnavailable


def first_line(error: object) -> str:
    """The Docker engine's own explanation of ``error``, first line only."""
    if isinstance(error, docker.errors.APIError) and error.explanation:
        text = str(error.explanation)
    else:
        text = str(error)
    return (text.strip().splitlines() or [""])[0]


def docker_client() -> docker.DockerClient:
    """Connect to the Docker engine the environment names (DOCKER_HOST, ...) and ping it."""
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as error:
        raise DockerUnavailable(
            f"Docker engine not reachable ({first_line(error)}): start Docker "
            "(e.g. `sudo systemctl start docker`) or point DOCKER_HOST at it"
        ) from None
    return client
