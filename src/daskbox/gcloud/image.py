"""Which image to launch: the gcloud side of the images component's API.

Normally the image is the content-tagged one the images component plans for the current
project (``plan_image``); for a VM it must already be in the registry (``find_pushed``),
and the VM gets the digest-pinned reference. An explicit ``--image`` skips planning; its
lock hash, groups and extras then come from its labels in the local engine (if there).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from daskbox.errors import DaskboxError, LaunchSpecError
from daskbox.gcloud.spec import LaunchImage
from daskbox.images import find_pushed, plan_image
from daskbox.images.engine import DockerEngine

NOT_PUSHED = "image {reference} is not in the registry: run `invoke build push` first"


def _split(label: str | None) -> tuple[str, ...]:
    """A comma-separated label value (groups, extras) as a tuple; empty when unset."""
    return tuple(item for item in (label or "").split(",") if item)


def _labelled(reference: str, *, need_engine: bool) -> LaunchImage | None:
    """The image as its daskbox labels describe it, if the local engine has it.

    A VM launch with an explicit ``--image`` does not need local Docker, so without an
    engine there is simply nothing to read (``need_engine`` False).
    """
    try:
        found = DockerEngine().local_image(reference)
    except DaskboxError:
        if need_engine:
            raise
        return None
    if found is None:
        return None
    labels = found.labels
    return LaunchImage(
        reference,
        lock_hash=labels.get("dev.daskbox.lock-hash", ""),
        groups=_split(labels.get("dev.daskbox.groups")),
        extras=_split(labels.get("dev.daskbox.extras")),
    )


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
    if explicit is None:
        plan = plan_image(project_root, overrides=dict(overrides or {}))
        planned: LaunchImage | None = LaunchImage(
            plan.reference, plan.lock_hash, tuple(plan.groups), tuple(plan.environment.extras)
        )
        reference = plan.reference
        # A VM launch reads the plan, not the local engine (which it does not need).
        local_image = _labelled(reference, need_engine=True) if local else None
    else:
        planned = None
        reference = explicit
        local_image = _labelled(reference, need_engine=local)
    described = planned or local_image or LaunchImage(reference, "", ())
    if local:
        if local_image is None and _pushed_or_none(reference) is None:
            raise LaunchSpecError(
                f"image {reference} is neither in the local Docker engine nor in its registry: "
                "run `invoke build` (or `invoke build push`)"
            )
        return described
    pinned = reference if "@sha256:" in reference else find_pushed(reference)
    if pinned is None:
        raise LaunchSpecError(NOT_PUSHED.format(reference=reference))
    return dataclasses.replace(described, reference=pinned)
