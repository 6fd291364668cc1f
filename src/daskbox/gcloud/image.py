"""Which image to launch: the gcloud side of the images component's API.

Normally the image is the content-tagged one the images component plans for the current
project (``plan_image``); for a VM it must already be in the registry (``find_pushed``),
and the VM gets the digest-pinned reference. An explicit ``--image`` skips planning; its
lock hash and groups then come from its labels/ENV in the local engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import docker
import docker.errors

from daskbox.errors import DaskboxError, ImageBuildError, LaunchSpecError
from daskbox.gcloud.spec import LaunchImage
from daskbox.images import find_pushed, plan_image

NOT_PUSHED = "image {reference} is not in the registry: run `invoke build push` first"


def _local_metadata(reference: str) -> tuple[str, tuple[str, ...]] | None:
    """(lock hash, groups) from a local image's labels or ENV; None if it is not local."""
    try:
        attrs = docker.from_env().images.get(reference).attrs
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.DockerException as error:
        raise ImageBuildError(f"cannot reach the Docker engine ({error}): start Docker") from None
    config = attrs.get("Config") or {}
    labels = config.get("Labels") or {}
    env = dict(item.split("=", 1) for item in config.get("Env") or [] if "=" in item)
    lock_hash = labels.get("dev.daskbox.lock-hash") or env.get("DASKBOX_LOCK_HASH", "")
    groups = labels.get("dev.daskbox.groups") or env.get("DASKBOX_GROUPS", "")
    return lock_hash, tuple(group for group in groups.split(",") if group)


def _pushed_or_none(reference: str) -> str | None:
    """``find_pushed``, with an unreachable registry counting as "not there"."""
    try:
        return find_pushed(reference)
    except DaskboxError:
        return None


def resolve_image(
    project_root: Path,
    explicit: str | None,
    *,
    local: bool,
    overrides: Mapping[str, Any] | None = None,
) -> LaunchImage:
    """The image to launch: digest-pinned for a VM (which can only pull from a registry);
    for the local target an image that exists only in the local engine will do."""
    lock_hash: str = ""
    groups: tuple[str, ...] = ()
    if explicit is None:
        plan = plan_image(project_root, overrides=dict(overrides or {}))
        reference, lock_hash, groups = plan.reference, plan.lock_hash, tuple(plan.groups)
    else:
        reference = explicit
    metadata = _local_metadata(reference)
    if metadata is not None and explicit is not None:
        lock_hash, groups = metadata
    if local:
        if metadata is None and _pushed_or_none(reference) is None:
            raise LaunchSpecError(
                f"image {reference} is neither in the local Docker engine nor in its registry: "
                "run `invoke build` (or `invoke build push`)"
            )
        return LaunchImage(reference, lock_hash, groups)
    pinned = reference if "@sha256:" in reference else find_pushed(reference)
    if pinned is None:
        raise LaunchSpecError(NOT_PUSHED.format(reference=reference))
    return LaunchImage(pinned, lock_hash, groups)
