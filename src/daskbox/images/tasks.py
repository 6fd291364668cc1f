"""Invoke tasks for images: ``invoke build push`` and ``invoke dockerfile``.

Each setting resolves as task flag > invoke config (``daskbox.<key>``) > [tool.daskbox] > default.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke.context import Context
from invoke.tasks import task

from daskbox._pyproject import find_project_root
from daskbox._tasks import Progress, one_line_errors
from daskbox.contract import DEFAULT_PLATFORM
from daskbox.errors import ConfigError, MissingLibrariesError
from daskbox.images.cache import DEFAULT_MAX_AGE, DEFAULT_MAX_SIZE

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
    "platform": "Target platform: linux/amd64 or linux/arm64 (e.g. for Axion/T2A VMs). "
    f"Config: [tool.daskbox] platform; default {DEFAULT_PLATFORM}.",
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
    platform: str | None = None,
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
        "platform": platform,
    }


def dashboard_warning(exported: Iterable[str]) -> str | None:
    """The warning for an image without bokeh, whose dashboard would show one line only."""
    if "bokeh" in exported:
        return None
    return (
        'warning: bokeh is not in the image, so its dashboard will be empty ("Dask needs '
        'bokeh"): run `poetry add bokeh`, then `invoke build push`'
    )


# `invoke build --with ml push`: push, given no flags, pushes what build just planned.
_LAST_PLANS: dict[Path, ImagePlan] = {}


def _plan(
    c: Context,
    with_: list[str] | None,
    extras: list[str] | None,
    base_image: str | None,
    repository: str | None,
    platform: str | None = None,
    reuse: bool = False,
    progress: Progress = print_progress,
) -> ImagePlan:
    from daskbox.images.pipeline import plan_image

    root = find_project_root()
    flags = [
        f"--{name} {value}"
        for name, values in (
            ("with", with_),
            ("extras", extras),
            ("base-image", base_image),
            ("repository", repository),
            ("platform", platform),
        )
        for value in ([values] if isinstance(values, str) else values or [])
    ]
    built = _LAST_PLANS.get(root) if reuse else None
    if built is not None and not flags:
        return built
    overrides = _overrides(c, root, with_, extras, base_image, repository, platform)
    plan = plan_image(root, overrides, progress=progress)
    if built is not None and plan.reference != built.reference:
        # invoke hands flags written after the last task name to that task only.
        raise ConfigError(
            f"`invoke build push {' '.join(flags)}` gives those flags to push only, so build "
            f"made another image than push would push: write `invoke build {' '.join(flags)} "
            "push`"
        )
    _LAST_PLANS[root] = plan
    return plan


@task(
    iterable=["with_", "extras"],
    help={
        **_IMAGE_HELP,
        "force": "Rebuild from scratch (no layer cache) even if this content tag exists.",
        "dry_run": "Print the Dockerfile and the image reference; build nothing.",
        "verbose": "On a failed library check, list every missing library (not only three).",
    },
)
def build(
    c: Context,
    with_: list[str] | None = None,
    extras: list[str] | None = None,
    base_image: str | None = None,
    repository: str | None = None,
    platform: str | None = None,
    force: bool = False,
    dry_run: bool = False,
    verbose: bool = False,
) -> None:
    """Build the image holding exactly this project's locked Poetry environment.

    Every layer of a wheel-only lock is prepared on this machine for the target platform, so
    an arm64 image builds here at native speed; locked sdists build in a stage of the target
    platform (emulated when it is not this machine's: QEMU binfmt, or Docker Desktop's).
    """
    with one_line_errors(INTERRUPTED_BUILD):
        from daskbox.images.pipeline import build_image

        plan = _plan(c, with_, extras, base_image, repository, platform)
        if warning := dashboard_warning(plan.environment.names()):
            print(warning, file=sys.stderr, flush=True)
        if dry_run:
            print(plan.dockerfile)
            print_progress(
                f"would build {plan.reference} "
                f"({len(plan.environment.requirements)} locked distributions, "
                f"{len(plan.local_wheels)} project wheels)"
            )
            return
        try:
            build_image(plan, progress=print_progress, force=force)
        except MissingLibrariesError as error:
            if verbose:
                raise MissingLibrariesError(error.everything, error.everything) from None
            raise


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
    platform: str | None = None,
    dry_run: bool = False,
) -> None:
    """Push the built image (content tag and latest) with your Docker credentials.

    Without flags it pushes the image ``invoke build`` last built for the platform (its
    record in .daskbox/images), whatever groups and extras it was built with. Right after
    ``build`` in the same command it pushes what build built; flags that would make push
    plan another image are refused with the spelling that gives them to both.
    """
    with one_line_errors(INTERRUPTED_PUSH):
        from daskbox.images.engine import DockerEngine
        from daskbox.images.pipeline import find_pushed, moving_tag, push_image, push_recorded
        from daskbox.images.settings import load_settings
        from daskbox.record import read_record

        root = find_project_root()
        record = None
        if root in _LAST_PLANS or with_ or extras or base_image or repository:
            plan = _plan(c, with_, extras, base_image, repository, platform, reuse=True)
            reference, moving = plan.reference, str(plan.moving)
        else:  # what build recorded, with whatever groups and extras it was given
            overrides = _overrides(c, root, None, None, None, None, platform)
            record = read_record(root, load_settings(root, overrides).platform)
            reference = record.reference
            moving = f"{record.repository}:{moving_tag(record.platform)}"
        if dry_run:
            pinned = find_pushed(reference, DockerEngine())
            print_progress(
                f"{reference} is already pushed as {pinned}"
                if pinned
                else f"would push {reference} and {moving}"
            )
        elif record is None:
            push_image(plan, progress=print_progress)
        else:
            push_recorded(root, record, progress=print_progress)


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
    platform: str | None = None,
    output: str | None = None,
) -> None:
    """Print (or write) the Dockerfile daskbox builds, for review."""
    with one_line_errors():
        plan = _plan(
            c, with_, extras, base_image, repository, platform, progress=progress_to_stderr
        )
        if output:
            Path(output).write_text(plan.dockerfile, encoding="utf-8")
            print_progress(f"wrote {output} for {plan.reference}")
        else:
            print(plan.dockerfile, end="")


@task(
    help={
        "prune": "Remove entries unused for longer than the maximum age, then the least "
        "recently used until the cache fits the maximum size.",
        "max_size": "Largest total size, e.g. 5GB. Config: invoke daskbox.cache-max-size or "
        f"DASKBOX_CACHE_MAX_SIZE; default {DEFAULT_MAX_SIZE}.",
        "max_age": "Longest time an entry may stay unused, e.g. 14d. Config: invoke "
        f"daskbox.cache-max-age or DASKBOX_CACHE_MAX_AGE; default {DEFAULT_MAX_AGE}.",
    }
)
def cache(
    c: Context, prune: bool = False, max_size: str | None = None, max_age: str | None = None
) -> None:
    """Show (and with --prune, trim) daskbox's download and layer cache, ~/.cache/daskbox.

    Builds prune it after they finish, so it stays within its limits on its own.
    """
    with one_line_errors():
        from daskbox.images import cache as store

        config: Any = c.config.get("daskbox", {}) or {}
        limits = store.CacheLimits.resolve(
            {**dict(config), "cache-max-size": max_size, "cache-max-age": max_age}
        )
        if prune:
            removed = store.prune(limits)
            print_progress(
                f"removed {len(removed)} entries, "
                f"{store.format_bytes(sum(e.size for e in removed))}"
            )
        for line in store.describe(store.entries(), limits):
            print(line)
