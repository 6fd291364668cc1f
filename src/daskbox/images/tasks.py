"""Invoke tasks for images: ``invoke build push`` and ``invoke dockerfile``.

Each setting resolves as task flag > invoke config (``daskbox.<key>``) > [tool.daskbox] > default.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke.context import Context
from invoke.tasks import task

from daskbox._pyproject import find_project_root
from daskbox._tasks import Progress, one_line_errors

if TYPE_CHECKING:  # the pipeline (and Poetry behind it) loads only when a task runs
    from daskbox.images.pipeline import ImagePlan

_IMAGE_HELP = {
    "with_": "Also put this Poetry dependency group in the image (repeatable; main is always in). "
    "Config: [tool.daskbox] groups.",
    "extras": "Also install this extra of the project (repeatable; adds to the configured "
    "extras). Config: [tool.daskbox] extras.",
    "base_image": "Base image with the target CPython. "
    "Config: [tool.daskbox] base-image; default python:<local x.y.z>-slim-bookworm.",
    "repository": "Image repository, e.g. europe-docker.pkg.dev/proj/repo/name. "
    "Config: [tool.daskbox] repository; default localhost:5000/<project name>.",
}


# What Ctrl-C leaves: Docker tags an image only when its build finished, and a registry
# tags a pushed image only once all of its layers arrived.
INTERRUPTED_BUILD = (
    "interrupted: build stopped before tagging the image, so none is half-made (Docker keeps "
    "its layer cache); run `invoke build` again"
)
INTERRUPTED_PUSH = (
    "interrupted: push stopped; the registry got no new tag (layers already sent are reused "
    "by the next push); run `invoke push` again"
)


def print_progress(message: str) -> None:
    """Progress lines; docker build's own step lines pass through as they are."""
    print(
        f"daskbox: {message}" if not message.startswith(("Step ", " ---> ")) else message,
        flush=True,
    )


def progress_to_stderr(message: str) -> None:
    """Progress of a task whose standard output is data (a Dockerfile)."""
    print(f"daskbox: {message}", file=sys.stderr, flush=True)


def _overrides(
    c: Context,
    root: Path,
    with_: list[str] | None,
    extras: list[str] | None,
    base_image: str | None,
    repository: str | None,
) -> dict[str, Any]:
    """Task flags and invoke config as [tool.daskbox]-style overrides for ``root``."""
    config: Any = c.config.get("daskbox", {}) or {}
    from daskbox.images.settings import load_settings

    configured = load_settings(root, dict(config))
    # --with and --extras both add to what is configured.
    return {
        **dict(config),
        "groups": list(dict.fromkeys([*configured.groups, *(with_ or [])])),
        "extras": list(dict.fromkeys([*configured.extras, *(extras or [])])),
        "base-image": base_image,
        "repository": repository,
    }


# `invoke build --with ml push`: push, given no flags, pushes what build just planned.
_LAST_PLANS: dict[Path, ImagePlan] = {}


def _plan(
    c: Context,
    with_: list[str] | None,
    extras: list[str] | None,
    base_image: str | None,
    repository: str | None,
    reuse: bool = False,
    progress: Progress = print_progress,
) -> ImagePlan:
    from daskbox.images.pipeline import plan_image

    root = find_project_root()
    if reuse and not (with_ or extras or base_image or repository) and root in _LAST_PLANS:
        return _LAST_PLANS[root]
    overrides = _overrides(c, root, with_, extras, base_image, repository)
    plan = plan_image(root, overrides, progress=progress)
    _LAST_PLANS[root] = plan
    return plan


@task(
    iterable=["with_", "extras"],
    help={
        **_IMAGE_HELP,
        "force": "Rebuild from scratch (no layer cache) even if this content tag exists.",
        "dry_run": "Print the Dockerfile and the image reference; build nothing.",
    },
)
def build(
    c: Context,
    with_: list[str] | None = None,
    extras: list[str] | None = None,
    base_image: str | None = None,
    repository: str | None = None,
    force: bool = False,
    dry_run: bool = False,
) -> None:
    """Build the image holding exactly this project's locked Poetry environment."""
    from daskbox.images.pipeline import build_image

    with one_line_errors(INTERRUPTED_BUILD):
        plan = _plan(c, with_, extras, base_image, repository)
        if dry_run:
            print(plan.dockerfile)
            print_progress(
                f"would build {plan.reference} "
                f"({len(plan.environment.requirements)} locked distributions, "
                f"{len(plan.local_wheels)} project wheels)"
            )
            return
        build_image(plan, progress=print_progress, force=force)


@task(
    iterable=["with_", "extras"],
    help={
        **_IMAGE_HELP,
        "dry_run": "Say what would be pushed (and whether the registry has it); push nothing.",
    },
)
def push(
    c: Context,
    with_: list[str] | None = None,
    extras: list[str] | None = None,
    base_image: str | None = None,
    repository: str | None = None,
    dry_run: bool = False,
) -> None:
    """Push the built image (content tag and latest) with your Docker credentials.

    Without flags, right after ``build`` in the same command, it pushes what build built.
    """
    from daskbox.images.engine import DockerEngine
    from daskbox.images.pipeline import find_pushed, push_image

    with one_line_errors(INTERRUPTED_PUSH):
        plan = _plan(c, with_, extras, base_image, repository, reuse=True)
        if dry_run:
            pinned = find_pushed(plan.reference, DockerEngine())
            print_progress(
                f"{plan.reference} is already pushed as {pinned}"
                if pinned
                else f"would push {plan.reference} and {plan.moving}"
            )
            return
        push_image(plan, progress=print_progress)


@task(
    iterable=["with_", "extras"],
    help={**_IMAGE_HELP, "output": "Write the Dockerfile to this path instead of printing it."},
)
def dockerfile(
    c: Context,
    with_: list[str] | None = None,
    extras: list[str] | None = None,
    base_image: str | None = None,
    repository: str | None = None,
    output: str | None = None,
) -> None:
    """Print (or write) the Dockerfile daskbox builds, for review."""
    with one_line_errors():
        plan = _plan(c, with_, extras, base_image, repository, progress=progress_to_stderr)
        if output:
            Path(output).write_text(plan.dockerfile, encoding="utf-8")
            print_progress(f"wrote {output} for {plan.reference}")
        else:
            print(plan.dockerfile, end="")
