"""Which image to launch: the record ``invoke build push`` handed over, never a new plan.

For a VM the image must be pushed (the record then holds its digest-pinned reference) and
built from the current poetry.lock; the local target may also run an image that is only
built. Neither needs Poetry, and a VM launch needs no Docker engine.

An explicit ``--image`` skips the record. A VM needs it digest-pinned, or the local Docker
engine (when there is one) asks the registry for its digest; its lock hash, groups and
extras then come from its labels in the local engine, if it has the image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daskbox import contract
from daskbox._pyproject import lock_hash
from daskbox.errors import LaunchSpecError
from daskbox.gcloud.spec import LaunchImage
from daskbox.record import read_record, record_path

NOT_PUSHED = "image {reference} is not in the registry: run `invoke build push` first"


def resolve_image(
    project_root: Path,
    explicit: str | None,
    *,
    local: bool,
    platform: str = contract.DEFAULT_PLATFORM,
) -> LaunchImage:
    """The image to launch: from the project's record for ``platform`` (digest-pinned for a
    VM), or the explicit ``--image``."""
    if explicit is not None:
        return _explicit_image(explicit, local=local)
    record = read_record(project_root, platform)
    current = lock_hash(project_root)
    if record.lock_hash != current:
        raise LaunchSpecError(
            f"the {platform} image in {record_path(project_root, platform)} was built from "
            f"another poetry.lock (sha256:{record.lock_hash[:12]}, now sha256:{current[:12]}): "
            "run `invoke build push`"
        )
    if record.pinned is None and not local:
        raise LaunchSpecError(NOT_PUSHED.format(reference=record.reference))
    return LaunchImage(
        reference=record.pinned or record.reference,
        lock_hash=record.lock_hash,
        groups=record.groups,
        extras=record.extras,
        platform=record.platform,
        record=record,
    )


def _explicit_image(reference: str, *, local: bool) -> LaunchImage:
    labels = _local_labels(reference)
    pinned = reference
    if not local and "@sha256:" not in reference:
        digest = _registry_digest(reference)
        if digest is None:
            raise LaunchSpecError(NOT_PUSHED.format(reference=reference))
        pinned = f"{reference.rsplit(':', 1)[0] if _has_tag(reference) else reference}@{digest}"
    return LaunchImage(
        pinned,
        lock_hash=labels.get(contract.LABEL_LOCK_HASH, ""),
        groups=_split(labels.get(contract.LABEL_GROUPS)),
        extras=_split(labels.get(contract.LABEL_EXTRAS)),
        platform=labels.get(contract.LABEL_PLATFORM, contract.DEFAULT_PLATFORM),
    )


def _has_tag(reference: str) -> bool:
    return ":" in reference.rsplit("/", 1)[-1]


def _split(label: str | None) -> tuple[str, ...]:
    """A comma-separated label value (groups, extras) as a tuple; empty when unset."""
    return tuple(item for item in (label or "").split(",") if item)


def _engine() -> Any | None:
    """The local Docker engine, or None: an explicit image needs none for a VM launch."""
    import docker  # only for an explicit --image

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException:
        return None
    return client


def _local_labels(reference: str) -> dict[str, str]:
    """The image's labels in the local engine (empty without an engine or the image)."""
    import docker

    client = _engine()
    if client is None:
        return {}
    try:
        attributes = client.api.inspect_image(reference)
    except docker.errors.APIError:
        return {}
    return dict(attributes.get("Config", {}).get("Labels") or {})


def _registry_digest(reference: str) -> str | None:
    """The registry's digest for a tagged reference, asked through the local engine."""
    import docker

    client = _engine()
    if client is None:
        raise LaunchSpecError(
            f"--image {reference} has no digest and no Docker engine is reachable to look it "
            "up: pass the digest-pinned reference (repository@sha256:...)"
        )
    try:
        return str(client.api.inspect_distribution(reference)["Descriptor"]["digest"])
    except docker.errors.APIError:
        return None
