"""Ask a registry which manifest an image reference names for one platform.

A multi-platform tag (``python:3.11.7-slim-bookworm``) names an index; the base image's
identity for a target is the digest of *that platform's* manifest in it, which the Docker
Engine API does not report (``/distribution`` gives the index digest and a platform list).
This module speaks the registry HTTP API (distribution spec) with the user's own Docker
credentials (``docker.auth``: config.json, credential stores and helpers).   [side effects: network]
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import docker.auth
import requests

from daskbox.errors import ImageBuildError
from daskbox.image_ref import ImageRef

_INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
_MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_ACCEPT = ", ".join((*_INDEX_TYPES, *_MANIFEST_TYPES))
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
_TIMEOUT = 20  # seconds per request


@dataclass(frozen=True)
class PlatformManifest:
    """The manifest a reference names for one platform."""

    digest: str  # sha256:... of the platform's manifest (not of an index)
    config_digest: str  # the image config's digest: the image id once pulled


def platform_manifest(reference: ImageRef, platform: str) -> PlatformManifest:
    """The manifest of ``reference`` for ``platform`` ("linux/arm64"), or ImageBuildError."""
    session = _Session(reference)
    target = reference.digest or reference.tag or "latest"
    body, media_type, digest = session.manifest(target)
    if media_type in _INDEX_TYPES or "manifests" in body:
        os_name, architecture = platform.split("/")
        for entry in body.get("manifests", []):
            described = entry.get("platform", {})
            if (described.get("os"), described.get("architecture")) == (os_name, architecture):
                body, _, digest = session.manifest(entry["digest"])
                break
        else:
            offered = sorted(
                f"{m.get('platform', {}).get('os')}/{m.get('platform', {}).get('architecture')}"
                for m in body.get("manifests", [])
            )
            raise ImageBuildError(
                f"base image {reference} has no {platform} image (it offers "
                f"{', '.join(offered) or 'none'}): choose a base-image built for {platform}"
            )
    else:
        config = session.blob(body["config"]["digest"])
        found = f"{config.get('os')}/{config.get('architecture')}"
        if found != platform:
            raise ImageBuildError(
                f"base image {reference} is {found}, not {platform}: choose a base-image "
                f"built for {platform} (or a multi-platform one)"
            )
    return PlatformManifest(digest=digest, config_digest=str(body["config"]["digest"]))


class _Session:
    """One repository on one registry, with the token or basic auth it asks for."""

    def __init__(self, reference: ImageRef) -> None:
        registry = reference.registry
        path = reference.repository
        if registry == "docker.io":
            host = "registry-1.docker.io"
            path = path.removeprefix("docker.io/")
            if "/" not in path:
                path = f"library/{path}"
        else:
            host = registry
            path = path.removeprefix(f"{registry}/")
        # Docker itself talks plain HTTP to loopback registries only.
        insecure = host.split(":")[0] in ("localhost", "127.0.0.1", "::1") or host.startswith(
            "127."
        )
        self.base = f"{'http' if insecure else 'https'}://{host}/v2/{path}"
        self.registry = registry
        self.reference = reference
        self.http = requests.Session()
        self.credentials = _credentials(registry)

    def manifest(self, target: str) -> tuple[dict[str, Any], str, str]:
        response = self._get(f"{self.base}/manifests/{target}", {"Accept": _ACCEPT})
        body: dict[str, Any] = response.json()
        media_type = str(body.get("mediaType") or response.headers.get("Content-Type", ""))
        digest = response.headers.get("Docker-Content-Digest") or (
            target if target.startswith("sha256:") else ""
        )
        if not digest:
            digest = "sha256:" + hashlib.sha256(response.content).hexdigest()
        return body, media_type, digest

    def blob(self, digest: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self._get(f"{self.base}/blobs/{digest}", {}).content)
        return data

    def _get(self, url: str, headers: dict[str, str]) -> requests.Response:
        try:
            response = self.http.get(url, headers=headers, timeout=_TIMEOUT)
            if response.status_code == 401:
                self._authenticate(response.headers.get("WWW-Authenticate", ""))
                response = self.http.get(url, headers=headers, timeout=_TIMEOUT)
        except requests.RequestException as error:
            raise ImageBuildError(
                f"registry {self.registry} unreachable for base image {self.reference} "
                f"({_cause(error)}): check the network, or use a base image present locally"
            ) from None
        if response.status_code in (401, 403):
            raise ImageBuildError(
                f"registry {self.registry} refused access to base image {self.reference}: "
                f"run `docker login {self.registry}`"
            )
        if response.status_code == 404:
            raise ImageBuildError(
                f"base image {self.reference} not found in {self.registry}: check base-image"
            )
        if response.status_code >= 400:
            raise ImageBuildError(
                f"registry {self.registry} answered {response.status_code} for base image "
                f"{self.reference}"
            )
        return response

    def _authenticate(self, challenge: str) -> None:
        scheme = challenge.split(" ", 1)[0].lower()
        user, password = self.credentials
        if scheme == "basic":
            if user is not None:
                self.http.auth = (user, password or "")
            return
        fields = dict(_CHALLENGE.findall(challenge))
        if scheme != "bearer" or "realm" not in fields:
            return
        params = {k: v for k, v in fields.items() if k in ("service", "scope")}
        auth = (user, password or "") if user is not None else None
        token = self.http.get(fields["realm"], params=params, auth=auth, timeout=_TIMEOUT)
        if token.ok:
            data = token.json()
            value = data.get("token") or data.get("access_token")
            self.http.headers["Authorization"] = f"Bearer {value}"


def _credentials(registry: str) -> tuple[str | None, str | None]:
    """The user's Docker credentials for ``registry`` (config file, store or helper)."""
    try:
        config = docker.auth.load_config().resolve_authconfig(registry) or {}
    except Exception:  # a broken helper: anonymous access may still work
        return None, None
    user = config.get("username") or config.get("Username")
    password = config.get("password") or config.get("Password")
    return (str(user), str(password)) if user else (None, None)


def _cause(error: BaseException) -> str:
    """The innermost reason of a requests failure, e.g. "Name or service not known"."""
    text = str(error)
    for pattern in (r"\[Errno [^\]]+\] ([^')\]]+)", r"(Connection refused)", r"(timed out)"):
        found = re.search(pattern, text)
        if found:
            return found[1].strip()
    return text.splitlines()[0][:200]
