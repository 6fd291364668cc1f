"""Can the VM pull the image? Decided before anything is created.

A VM pulls over the internet with the credentials its boot configures: for Google's
registries (Artifact Registry ``*-docker.pkg.dev``, Container Registry ``*gcr.io``) the
helper ``docker-credential-gcr`` hands Docker the VM service account's token, the way
Google documents for Container-Optimized OS; any other registry is pulled anonymously.

* A registry on a loopback, link-local or private address (or a name such as
  ``localhost`` or ``registry:5000`` that only resolves on your network) is out of the
  VM's reach: refused with the fix, unless ``allow_private_registry`` says it lives
  inside the VPC (the emulator tests, whose registry is on 127.0.0.1, use this).
* A Google registry needs a storage read scope (or ``cloud-platform``) on the VM.
* Any other registry must serve the image anonymously: ``anonymous_pull`` asks it,
  following its token challenge as Docker does, and a registry that wants credentials
  is refused (the VM has none for it).
"""

from __future__ import annotations

import ipaddress
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Literal

from daskbox.errors import LaunchSpecError
from daskbox.image_ref import ImageRef

PUSH_TO_ARTIFACT_REGISTRY = (
    "push the image to Artifact Registry (repository = "
    '"LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/NAME" in [tool.daskbox], then '
    "`invoke build push`)"
)
# Scopes that let the VM's service account read Artifact Registry and Container Registry.
PULL_SCOPES = frozenset(
    {"storage-ro", "storage-rw", "storage-full", "cloud-platform"}
    | {
        f"https://www.googleapis.com/auth/{name}"
        for name in (
            "devstorage.read_only",
            "devstorage.read_write",
            "devstorage.full_control",
            "cloud-platform",
        )
    }
)
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
# "missing": the registry answered 404 (MANIFEST_UNKNOWN): it has no such image, whoever asks.
Pullable = Literal["anonymous", "missing", "needs-credentials", "unreachable"]


def registry_host(reference: str) -> str:
    """The registry part of an image reference (``docker.io`` when there is none)."""
    return ImageRef.parse(reference).registry


def is_google_registry(host: str) -> bool:
    """Artifact Registry or Container Registry: pulled with the VM's service account."""
    name = host.split(":", 1)[0]
    return name.endswith(".pkg.dev") or name == "gcr.io" or name.endswith(".gcr.io")


def _hostname(host: str) -> str:
    if host.startswith("["):  # [::1]:5000
        return host[1 : host.index("]")]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def private_reason(host: str) -> str | None:
    """Why a VM cannot reach ``host`` (a registry's ``name[:port]``), or None."""
    name = _hostname(host)
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        if name == "localhost" or name.endswith(".localhost"):
            return "a loopback name"
        if "." not in name:
            return "a name without a domain, which resolves on your network only"
        if re.search(r"\.(local|internal|lan|home\.arpa)$", name):
            return "a local-network name"
        return None
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_private or address.is_unspecified:
        return "a private address"
    return None


def check_vm_can_pull(
    reference: str, scopes: tuple[str, ...], *, allow_private_registry: bool
) -> None:
    """Refuse an image the VM cannot pull, before anything is created (no network here)."""
    host = registry_host(reference)
    reason = private_reason(host)
    if reason is not None and not allow_private_registry:
        raise LaunchSpecError(
            f"the VM cannot pull {reference}: its registry {host} is {reason}, out of the "
            f"VM's reach: {PUSH_TO_ARTIFACT_REGISTRY}, or pass --allow-private-registry if "
            "the registry is inside the VM's network"
        )
    if is_google_registry(host) and not PULL_SCOPES & set(scopes):
        raise LaunchSpecError(
            f"the VM cannot pull from {host} with the scopes {','.join(scopes) or '(none)'}: "
            "add storage-ro to scopes in [tool.daskbox.gcloud]"
        )


def _request(url: str, method: str, headers: dict[str, str], timeout: float) -> int:
    request = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def _challenge(url: str, headers: dict[str, str], timeout: float) -> tuple[int, str]:
    request = urllib.request.Request(url, method="HEAD", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), ""
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("WWW-Authenticate", "")


def _anonymous_token(challenge: str, repository: str, timeout: float) -> str | None:
    """Docker's token dance without credentials: a public repository gets a pull token."""
    fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    realm = fields.pop("realm", None)
    if realm is None:
        return None
    query = {"service": fields.get("service", ""), "scope": f"repository:{repository}:pull"}
    url = f"{realm}?{urllib.parse.urlencode(query)}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = json.loads(response.read())
    except (urllib.error.URLError, ValueError, OSError):
        return None
    token = data.get("token") or data.get("access_token")
    return str(token) if token else None


def anonymous_pull(reference: str, timeout: float = 5.0) -> Pullable:
    """Whether the registry serves ``reference``'s manifest without credentials, has no
    such manifest (404, e.g. a deleted image), or wants credentials (401, 403)."""
    ref = ImageRef.parse(reference)
    host = ref.registry
    path = ref.repository.removeprefix(f"{host}/")
    if host == "docker.io":
        host, path = "registry-1.docker.io", path if "/" in path else f"library/{path}"
    target = ref.digest or ref.tag or "latest"
    schemes = ("http", "https") if private_reason(host) else ("https",)
    for scheme in schemes:
        url = f"{scheme}://{host}/v2/{path}/manifests/{target}"
        headers = {"Accept": MANIFEST_TYPES}
        try:
            status, challenge = _challenge(url, headers, timeout)
            if status == 401 and challenge.lower().startswith("bearer"):
                token = _anonymous_token(challenge, path, timeout)
                if token is None:
                    return "needs-credentials"
                status = _request(
                    url, "HEAD", {**headers, "Authorization": f"Bearer {token}"}, timeout
                )
        except (urllib.error.URLError, OSError, ValueError):
            continue
        if status == 200:
            return "anonymous"
        if status == 404:
            return "missing"
        if status in {401, 403}:
            return "needs-credentials"
    return "unreachable"
