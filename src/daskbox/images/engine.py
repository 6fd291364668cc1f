"""The one seam to the Docker Engine: build, inspect, push, ask a registry for a digest.

Every low-level failure becomes a one-line DaskboxError here, naming what is wrong and the fix.
Credentials are the user's own: the Docker SDK reads DOCKER_CONFIG/~/.docker/config.json,
including credential helpers (e.g. gcloud's for Artifact Registry).   [side effects: Docker]
"""

from __future__ import annotations

import contextlib
import io
import re
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

import docker
import docker.errors
import requests.exceptions

from daskbox._docker import docker_client, first_line
from daskbox._tasks import Progress
from daskbox.errors import ImageBuildError, PushError
from daskbox.image_ref import ImageRef
from daskbox.images.cache import format_bytes

# Transport failures only: a bare "timeout" or "EOF" also appears in other errors, which
# would then get the "start it or fix the host" hint.
_UNREACHABLE = re.compile(
    r"connection refused|no such host|i/o timeout|TLS handshake timeout|dial tcp|"
    r"connection reset|server gave HTTP response to HTTPS client|no route to host|"
    r"context deadline exceeded|: EOF$",
    re.IGNORECASE,
)
_DENIED = re.compile(
    r"unauthorized|authentication required|no basic auth credentials|denied|"
    r"incorrect username or password|forbidden",
    re.IGNORECASE,
)
# The classic builder's line after each finished step: " ---> 3f2a9c0d1e4b".
_STEP_IMAGE = re.compile(r"^ ---> ([0-9a-f]{12})$")
_STEP_LINE = re.compile(r"^Step \d+/\d+ : (\w+)")
_INVALID_NAME = re.compile(r"invalid reference format|repository name|NAME_INVALID", re.IGNORECASE)


@dataclass(frozen=True)
class LocalImage:
    """What the engine knows about a local image."""

    id: str
    repo_digests: tuple[str, ...]
    layers: tuple[str, ...]
    labels: Mapping[str, str]
    size: int
    platform: str = ""  # "linux/amd64": the image's os/architecture
    env: Mapping[str, str] = field(default_factory=dict)  # the image config's ENV
    tags: tuple[str, ...] = ()  # repository:tag names of the image


@dataclass(frozen=True)
class PushResult:
    """A finished push: the digest-pinned reference and what went over the wire."""

    reference: ImageRef
    layers_pushed: int
    layers_skipped: int
    bytes_uploaded: int


class ContainerEngine(Protocol):
    """What the images pipeline needs from a container engine (``DockerEngine`` implements it)."""

    def local_image(self, reference: str) -> LocalImage | None: ...
    def build(
        self,
        context: IO[bytes],
        tag: str,
        build_args: Mapping[str, str],
        progress: Progress,
        no_cache: bool = False,
        platform: str | None = None,
    ) -> str: ...
    def tag(self, image_id: str, reference: ImageRef) -> None: ...
    def pull(self, reference: ImageRef, platform: str | None = None) -> None: ...
    def image_id(self, reference: str) -> str: ...
    def run(
        self, image: str, command: list[str], mounts: Mapping[str, str], platform: str | None = None
    ) -> None: ...
    def read_paths(self, image: str, paths: list[str]) -> dict[str, tarfile.TarFile | None]: ...
    def remove_image(self, image_id: str) -> None: ...
    def remote_digest(self, reference: ImageRef) -> str | None: ...
    def push(self, reference: ImageRef, progress: Progress) -> PushResult: ...


class DockerEngine:
    """ContainerEngine over the Docker Engine API (docker SDK)."""

    def __init__(self, client: docker.DockerClient | None = None) -> None:
        self.client = client or docker_client()

    def local_image(self, reference: str) -> LocalImage | None:
        """Inspect a local image by reference or id; None when absent."""
        try:
            attributes = self.client.api.inspect_image(reference)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as error:
            if error.status_code in (400, 404):
                return None
            raise ImageBuildError(f"cannot inspect {reference}: {first_line(error)}") from None
        return LocalImage(
            id=attributes["Id"],
            repo_digests=tuple(attributes.get("RepoDigests") or ()),
            layers=tuple(attributes.get("RootFS", {}).get("Layers") or ()),
            labels=dict(attributes.get("Config", {}).get("Labels") or {}),
            size=int(attributes.get("Size") or 0),
            platform=f"{attributes.get('Os', '')}/{attributes.get('Architecture', '')}",
            env=dict(
                item.split("=", 1)
                for item in attributes.get("Config", {}).get("Env") or ()
                if "=" in item
            ),
            tags=tuple(attributes.get("RepoTags") or ()),
        )

    def build(
        self,
        context: IO[bytes],
        tag: str,
        build_args: Mapping[str, str],
        progress: Progress,
        no_cache: bool = False,
        platform: str | None = None,
    ) -> str:
        """Build the context with no network at all; stream the builder's lines; return the id.

        A failed build leaves no image behind: the engine removes its intermediate containers
        (``forcerm``) and this removes the images of the steps that finished.
        """
        steps: list[str] = []
        cached = False
        try:
            stream: Iterator[dict[str, Any]] = self.client.api.build(
                fileobj=context,
                custom_context=True,
                tag=tag,
                network_mode="none",
                buildargs=dict(build_args),
                rm=True,
                forcerm=True,
                pull=False,
                nocache=no_cache,
                decode=True,
                platform=platform,
            )
            image_id = None
            output: list[str] = []
            for chunk in stream:
                if "error" in chunk:  # its steps are removed below, as on any exception
                    raise BuildStepFailed(first_line(chunk["error"]), output[-200:])
                text = str(chunk.get("stream", "")).rstrip()
                if text:
                    progress(text)
                    output.extend(text.splitlines())
                    step = _STEP_IMAGE.match(text)
                    instruction = _STEP_LINE.match(text)
                    if instruction:  # FROM's image is the base's, never this build's
                        cached = instruction[1].upper() == "FROM"
                    elif text.endswith("---> Using cache"):
                        cached = True
                    elif step:
                        # A cached step was made earlier, for this or another image (perhaps
                        # building right now): only the steps this build made are its own.
                        if not cached:
                            steps.append(step[1])
                        cached = False
                if "aux" in chunk and "ID" in chunk["aux"]:
                    image_id = chunk["aux"]["ID"]
        except docker.errors.APIError as error:
            self._remove_steps(steps)
            raise ImageBuildError(f"docker build failed: {first_line(error)}") from None
        except requests.exceptions.ConnectionError as error:
            raise ImageBuildError(f"Docker engine connection lost during build: {error}") from None
        except BaseException:
            self._remove_steps(steps)  # Ctrl-C: nothing half-made stays behind
            raise
        if image_id is None:
            image = self.local_image(tag)
            if image is None:
                raise ImageBuildError(f"docker build produced no image for {tag}")
            image_id = image.id
        return image_id

    def tag(self, image_id: str, reference: ImageRef) -> None:
        """Tag the local image ``image_id`` as ``reference`` (which must carry a tag)."""
        if reference.tag is None:
            raise ValueError(f"cannot tag {image_id} as {reference}: the reference has no tag")
        self.client.api.tag(image_id, reference.repository, reference.tag)

    def _remove_steps(self, steps: list[str]) -> None:
        """Remove the untagged images of finished steps (newest first), unless still used."""
        for image in reversed(steps):
            # A cached step another image or tag still uses stays.
            with contextlib.suppress(docker.errors.APIError):
                self.client.api.remove_image(image, noprune=False)

    def remove_image(self, image_id: str) -> None:
        """Remove a local image and its untagged parents; absent or in use is not an error."""
        with contextlib.suppress(docker.errors.APIError):
            self.client.api.remove_image(image_id, noprune=False)

    def pull(self, reference: ImageRef, platform: str | None = None) -> None:
        """Pull ``reference`` (the base image) for ``platform`` with the user's credentials."""
        try:
            self.client.api.pull(
                reference.repository,
                tag=reference.digest or reference.tag or "latest",
                platform=platform,
            )
        except docker.errors.APIError as error:
            raise ImageBuildError(
                f"cannot pull base image {reference} ({first_line(error)}): "
                f"check the name in [tool.daskbox] base-image or `docker pull {reference}`"
            ) from None

    def image_id(self, reference: str) -> str:
        """The local image id of ``reference``; a one-line ImageBuildError when absent."""
        image = self.local_image(reference)
        if image is None:
            raise ImageBuildError(f"image {reference} not found locally: `docker pull {reference}`")
        return image.id

    def run(
        self, image: str, command: list[str], mounts: Mapping[str, str], platform: str | None = None
    ) -> None:
        """Run a throwaway root container on the host network (host dir -> container dir)."""
        try:
            self.client.containers.run(
                image,
                command,
                entrypoint=[],
                user="0",
                network_mode="host",
                remove=True,
                volumes={host: {"bind": inside, "mode": "rw"} for host, inside in mounts.items()},
                platform=platform,
            )
        except docker.errors.ContainerError as error:
            stderr = error.stderr.decode(errors="replace") if error.stderr else str(error)
            raise ImageBuildError((stderr.strip().splitlines() or ["failed"])[-1]) from None
        except docker.errors.APIError as error:
            raise ImageBuildError(first_line(error)) from None

    def read_paths(self, image: str, paths: list[str]) -> dict[str, tarfile.TarFile | None]:
        """Each path of ``image`` as a tar (``docker cp``), None when absent. The container is
        created, never started: no emulation is needed for a foreign platform's image."""
        container = self.client.api.create_container(image, command=["true"], entrypoint=[])
        found: dict[str, tarfile.TarFile | None] = {}
        try:
            for path in paths:
                try:
                    stream, _ = self.client.api.get_archive(container["Id"], path)
                except docker.errors.NotFound:
                    found[path] = None
                    continue
                data = io.BytesIO(b"".join(stream))
                found[path] = tarfile.open(fileobj=data)  # noqa: SIM115  (in memory; returned)
        finally:
            self.client.api.remove_container(container["Id"], force=True)
        return found

    def remote_digest(self, reference: ImageRef) -> str | None:
        """The registry's manifest digest for ``reference`` (a HEAD request); None if absent."""
        try:
            descriptor = self.client.api.inspect_distribution(str(reference))
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as error:
            message = first_line(error)
            if "manifest unknown" in message or "not found" in message.lower():
                return None
            raise registry_error(reference, message) from None
        return str(descriptor["Descriptor"]["digest"])

    def push(self, reference: ImageRef, progress: Progress) -> PushResult:
        """Push ``reference`` with the user's credentials; count layers and bytes uploaded."""
        uploaded: dict[str, int] = {}
        skipped: set[str] = set()
        digest = None
        try:
            stream = self.client.api.push(
                reference.repository, tag=reference.tag, stream=True, decode=True
            )
            for chunk in stream:
                if "error" in chunk:
                    raise registry_error(reference, first_line(chunk["error"]))
                status = str(chunk.get("status", ""))
                layer = str(chunk.get("id", ""))
                if status == "Pushing" and layer:
                    uploaded[layer] = int(chunk.get("progressDetail", {}).get("current") or 0)
                elif status == "Pushed" and layer:
                    progress(f"pushed layer {layer} ({format_bytes(uploaded.get(layer, 0))})")
                elif status == "Layer already exists" and layer:
                    skipped.add(layer)
                if "aux" in chunk and "Digest" in chunk["aux"]:
                    digest = str(chunk["aux"]["Digest"])
        except docker.errors.APIError as error:
            raise registry_error(reference, first_line(error)) from None
        if digest is None:
            raise PushError(f"push of {reference} finished without a digest from the registry")
        return PushResult(
            reference=reference.with_digest(digest),
            layers_pushed=len(uploaded),
            layers_skipped=len(skipped),
            bytes_uploaded=sum(uploaded.values()),
        )


class BuildStepFailed(ImageBuildError):
    """A Dockerfile step failed; ``output`` holds the build's last lines for diagnosis."""

    def __init__(self, message: str, output: list[str]) -> None:
        super().__init__(
            f"docker build failed: {message}: see the build output above "
            "(`invoke dockerfile` shows the Dockerfile)"
        )
        self.output = output


def registry_error(reference: ImageRef, message: str) -> PushError:
    """The one-line PushError for a registry's ``message``, with the fix for its kind."""
    registry = reference.registry
    if _DENIED.search(message):
        return PushError(
            f"registry {registry} refused the credentials for {reference.repository} "
            f"({message}): run `docker login {registry}` (or configure its credential helper)"
        )
    if _INVALID_NAME.search(message):
        return PushError(
            f"registry {registry} rejects the repository name {reference.repository!r} "
            f"({message}): fix `repository` in [tool.daskbox]"
        )
    if _UNREACHABLE.search(message):
        return PushError(
            f"registry {registry} unreachable ({message}): start it or fix the host in "
            "[tool.daskbox] repository"
        )
    return PushError(f"registry {registry} error for {reference}: {message}")
