"""Project -> ImagePlan -> image -> registry.

``plan_image`` computes everything, including the content tag, without building anything:
its only side effects are the project's wheels (kept by content in ``.daskbox/cache``) and
asking Docker for the base image's identity. ``build_image`` and ``push_image`` act on a
plan and skip whatever is already done, which is what makes ``invoke build push`` with
nothing changed a no-op.
"""

from __future__ import annotations

import datetime
import hashlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import parse_wheel_filename

from daskbox import __version__, contract
from daskbox._files import write_atomically
from daskbox._tasks import Progress
from daskbox.contract import STATE_DIR
from daskbox.errors import ConfigError, DaskboxError, ImageBuildError, PushError
from daskbox.image_ref import ImageRef
from daskbox.images import dockerfile as layout
from daskbox.images.apt import fetch_debs
from daskbox.images.context import ContextFile, write_context
from daskbox.images.dockerfile import DockerfilePlan, render
from daskbox.images.engine import ContainerEngine, DockerEngine, LocalImage, PushResult
from daskbox.images.environment import Environment, Platform, Source, installed_set_digest
from daskbox.images.lock import export_environment
from daskbox.images.settings import ImageSettings, load_settings
from daskbox.images.wheels import (
    Artifact,
    FetchedDistributions,
    build_local_wheels,
    fetch_index_distributions,
    install_overlay,
    wheel_content_digest,
)
from daskbox.record import ImageRecord, read_record, write_record

MOVING_TAG = "latest"
_ENTRYPOINT_SOURCE = Path(__file__).resolve().parent.parent / "entrypoint"
_CONTRACT_SOURCE = Path(__file__).resolve().parent.parent / "contract.py"
_ENTRYPOINT_INIT = (
    '"""daskbox inside the image: only the entrypoint (copied, not installed)."""\n\n'
    f'__version__ = "{__version__}"\n'
)


@dataclass(frozen=True)
class ImagePlan:
    """Everything needed to build and push one image, and its content-addressed reference."""

    project_root: Path
    settings: ImageSettings
    environment: Environment
    image: ImageRef  # repository:contenttag
    dockerfile_plan: DockerfilePlan
    dockerfile: str
    local_wheels: tuple[Artifact, ...]
    entrypoint_files: tuple[tuple[str, bytes], ...]
    base_digest: str  # the base image's registry digest, or its local id when it has none
    installed: Mapping[str, str]  # name -> version of every distribution the image installs

    @property
    def reference(self) -> str:
        """``repository:contenttag`` as text (what gcloud's launch looks up)."""
        return str(self.image)

    @property
    def lock_hash(self) -> str:
        """sha256 hex of the poetry.lock the image is built from."""
        return self.environment.lock_hash

    @property
    def groups(self) -> tuple[str, ...]:
        """The Poetry groups the image installs."""
        return self.environment.groups

    @property
    def moving(self) -> ImageRef:
        """The same repository tagged ``latest``, moved to each new build."""
        return self.image.with_tag(MOVING_TAG)


def plan_image(
    project_root: Path,
    overrides: Mapping[str, Any] | None = None,
    target: Platform | None = None,
    progress: Progress | None = None,
    engine: ContainerEngine | None = None,
) -> ImagePlan:
    """Export the environment, build the project's wheels and render the Dockerfile.

    ``overrides`` holds task flags / invoke config under [tool.daskbox]'s key names. Docker
    is only asked for the base image's identity (pulling it when it is not local), which the
    content tag covers. The project's wheels land in a content-addressed cache folder, so
    concurrent plans of one project never touch each other's files.
    """
    project_root = project_root.resolve()
    settings = load_settings(project_root, overrides)
    repository = ImageRef.parse(settings.repository)
    if repository.tag or repository.digest:
        raise ConfigError(
            f"[tool.daskbox] repository {settings.repository!r} must not carry a tag or digest: "
            "daskbox tags images by content"
        )
    base = ImageRef.parse(settings.base_image)
    target = target or Platform.local()
    progress = progress or _quiet
    environment = export_environment(project_root, target, settings.groups, settings.extras)
    local_wheels = _local_wheels(project_root, environment, progress)
    base_digest = base_image_digest(engine or DockerEngine(), base, progress)
    entrypoint_files = image_entrypoint_files()
    installed = _installed(environment, local_wheels)
    dockerfile_plan = DockerfilePlan(
        base_image=settings.base_image,
        lock_hash=environment.lock_hash,
        groups=environment.groups,
        project_wheels=tuple(w.filename for w in local_wheels),
        apt_packages=settings.apt_packages,
        labels=_labels(environment, settings, installed, base_digest),
    )
    text = render(dockerfile_plan)
    tag = _content_tag(environment, base_digest, text, entrypoint_files, local_wheels)
    return ImagePlan(
        project_root=project_root,
        settings=settings,
        environment=environment,
        image=repository.with_tag(tag),
        dockerfile_plan=dockerfile_plan,
        dockerfile=text,
        local_wheels=local_wheels,
        entrypoint_files=entrypoint_files,
        base_digest=base_digest,
        installed=installed,
    )


def base_image_digest(engine: ContainerEngine, base: ImageRef, progress: Progress) -> str:
    """What identifies the base image's content: the digest it was pulled by (stable across
    machines), else its local image id (a base built locally). Pulls a missing base."""
    if base.digest is not None:
        return base.digest
    image = engine.local_image(str(base))
    if image is None:
        # The daemon pulls the base; the build itself then runs without network.
        progress(f"pulling base image {base}")
        engine.pull(base)
        image = engine.local_image(str(base))
        if image is None:
            raise ImageBuildError(f"base image {base} is still missing after a pull")
    for repo_digest in image.repo_digests:
        repository, _, digest = repo_digest.partition("@")
        if repository == base.repository:
            return digest
    return image.id


def _local_wheels(
    project_root: Path, environment: Environment, progress: Progress
) -> tuple[Artifact, ...]:
    """Build (or find built) the project's wheels in ``.daskbox/cache/local-wheels``; builds
    of older sources unused for a day are pruned."""
    if not environment.local_requirements and not environment.package_mode:
        return ()
    cache = project_root / STATE_DIR / "cache" / "local-wheels"
    wheels = build_local_wheels(project_root, environment, cache, progress)
    write_atomically(cache.parent / ".gitignore", "*\n")
    _prune_local_wheels(cache, keep={w.path.parent for w in wheels})
    return wheels


_LOCAL_WHEELS_MAX_AGE = 24 * 3600  # seconds; older unused builds of the project go


def _prune_local_wheels(cache: Path, keep: set[Path]) -> None:
    cutoff = time.time() - _LOCAL_WHEELS_MAX_AGE
    for entry in cache.iterdir():
        if entry in keep:
            continue
        try:
            if entry.stat().st_mtime >= cutoff:
                continue  # recent: maybe another build's, still in use
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink()
        except FileNotFoundError:
            pass  # another plan pruned it first


def _installed(
    environment: Environment, local_wheels: tuple[Artifact, ...]
) -> dict[str, str]:
    """Name -> version of everything the image installs: locked index distributions and the
    project's own wheels."""
    installed = {str(r.name): r.version or "" for r in environment.requirements
                 if r.source is Source.INDEX}  # fmt: skip
    for wheel in local_wheels:
        name, version, *_ = parse_wheel_filename(wheel.filename)
        installed[str(name)] = str(version)
    return dict(sorted(installed.items()))


def _labels(
    environment: Environment,
    settings: ImageSettings,
    installed: Mapping[str, str],
    base_digest: str,
) -> tuple[tuple[str, str], ...]:
    """The image's labels, sorted (the source revision is added at build time)."""
    labels = {
        "org.opencontainers.image.title": str(environment.project_name),
        "org.opencontainers.image.version": environment.project_version,
        "org.opencontainers.image.base.name": settings.base_image,
        "org.opencontainers.image.base.digest": base_digest,
        contract.LABEL_PYTHON_VERSION: environment.target.python_version,
        contract.LABEL_PLATFORM: environment.target.oci,
        contract.LABEL_LOCK_HASH: environment.lock_hash,
        contract.LABEL_INSTALLED_DIGEST: installed_set_digest(dict(installed)),
        contract.LABEL_VERSION: __version__,
        contract.LABEL_GROUPS: ",".join(environment.groups),
        contract.LABEL_EXTRAS: ",".join(environment.extras),
    }
    return tuple(sorted(labels.items()))


def _content_tag(
    environment: Environment,
    base_digest: str,
    dockerfile: str,
    entrypoint_files: tuple[tuple[str, bytes], ...],
    local_wheels: tuple[Artifact, ...],
) -> str:
    """A hash of everything that decides the image's content: lock, exported set, Python,
    the base image's content (its digest; its name is in the Dockerfile), Dockerfile,
    entrypoint and the project's wheels (blind to zip timestamps)."""
    content = hashlib.sha256()
    for part in (
        environment.fingerprint,
        base_digest,
        dockerfile,
        *(f"{name}\0{hashlib.sha256(data).hexdigest()}" for name, data in entrypoint_files),
        *(f"{w.filename}\0{wheel_content_digest(w.path)}" for w in local_wheels),
    ):
        content.update(part.encode() + b"\0")
    return content.hexdigest()[:20]


def _quiet(_: str) -> None:
    pass


def image_entrypoint_files() -> tuple[tuple[str, bytes], ...]:
    """The image's /opt/daskbox content as (path, bytes): the entrypoint package and the
    contract module read from this installation, plus a minimal daskbox/__init__.py (so
    nothing else of daskbox is imported there)."""
    root = layout.ENTRYPOINT_DIR
    files = [
        (f"{root}/__init__.py", _ENTRYPOINT_INIT.encode()),
        (f"{root}/contract.py", _CONTRACT_SOURCE.read_bytes()),
    ]
    for path in sorted(_ENTRYPOINT_SOURCE.rglob("*.py")):
        relative = path.relative_to(_ENTRYPOINT_SOURCE)
        if "__pycache__" in relative.parts or "tests" in relative.parts:
            continue
        files.append((f"{root}/entrypoint/{relative.as_posix()}", path.read_bytes()))
    return tuple(files)


def context_files(
    plan: ImagePlan,
    fetched: FetchedDistributions,
    project_overlay: Path | None,
    debs: tuple[Artifact, ...] = (),
) -> dict[str, ContextFile]:
    """The build context: Dockerfile, hashed requirements, wheels and sdists, entrypoint,
    and the project installed into a venv overlay."""
    files = {
        "Dockerfile": ContextFile(data=plan.dockerfile.encode()),
        layout.REQUIREMENTS_FILE: ContextFile(data=plan.environment.requirements_txt().encode()),
    }
    for folder, artifacts in (
        (layout.WHEELS_DIR, fetched.wheels),
        (layout.SDISTS_DIR, fetched.sdists),
        (layout.BUILD_WHEELS_DIR, fetched.build_wheels),
        *([(layout.APT_DIR, debs)] if plan.settings.apt_packages else []),
    ):
        files[f"{folder}/"] = ContextFile()  # present even when empty: COPY needs it
        for artifact in artifacts:
            files[f"{folder}/{artifact.filename}"] = ContextFile(path=artifact.path)
    if project_overlay is not None:
        for path in sorted(project_overlay.rglob("*")):
            if path.is_file():
                name = f"{layout.PROJECT_DIR}/{path.relative_to(project_overlay).as_posix()}"
                files[name] = ContextFile(path=path, executable=bool(path.stat().st_mode & 0o111))
    for name, data in plan.entrypoint_files:
        files[name] = ContextFile(data=data)
    return files


@dataclass(frozen=True)
class BuildResult:
    """A finished ``build_image``: the image's id and content-tagged reference."""

    image_id: str
    reference: ImageRef
    built: bool  # False when the content tag already existed locally


def build_image(
    plan: ImagePlan,
    engine: ContainerEngine | None = None,
    progress: Progress = print,
    force: bool = False,
) -> BuildResult:
    """Build ``plan`` unless its content tag exists locally; tag it also as ``latest``.

    ``force`` rebuilds without Docker's layer cache.
    """
    engine = engine or DockerEngine()
    existing = None if force else engine.local_image(plan.reference)
    if existing is not None:
        engine.tag(existing.id, plan.moving)
        _record_build(plan, existing.id)
        progress(f"{plan.reference} is up to date")
        return BuildResult(existing.id, plan.image, built=False)
    base = ImageRef.parse(plan.settings.base_image)
    if base_image_digest(engine, base, progress) != plan.base_digest:
        # The tag names the planned base; building on another would break that promise.
        raise ImageBuildError(
            f"base image {base} changed since the plan ({plan.base_digest[:19]}): "
            "run the build again"
        )
    fetched = fetch_index_distributions(plan.environment, progress)
    debs: tuple[Artifact, ...] = ()
    if plan.settings.apt_packages:
        debs = fetch_debs(engine, plan.settings.base_image, plan.settings.apt_packages,
                          progress)  # fmt: skip
    progress(
        f"building {plan.reference} ({len(fetched.wheels)} locked wheels, "
        f"{len(fetched.sdists)} sdists, {len(plan.local_wheels)} project wheels, network: none)"
    )
    with tempfile.TemporaryDirectory(prefix="daskbox-overlay-") as scratch:
        overlay = None
        if plan.local_wheels:
            overlay = install_overlay(plan.local_wheels, plan.environment.target, Path(scratch))
        context = write_context(context_files(plan, fetched, overlay, debs))
    with context:
        image_id = engine.build(
            context,
            plan.reference,
            {
                layout.IMAGE_TAG_ARG: plan.image.tag or "",
                layout.REVISION_ARG: source_revision(plan.project_root),
            },
            progress,
            no_cache=force,
        )
    engine.tag(image_id, plan.moving)
    _record_build(plan, image_id)
    progress(f"built {plan.reference} ({image_id[:19]})")
    return BuildResult(image_id, plan.image, built=True)


def image_record(plan: ImagePlan, image_id: str) -> ImageRecord:
    """The record of ``plan`` built as ``image_id`` (not pushed yet)."""
    return plan.environment.image_record(
        reference=plan.reference, image_id=image_id, installed=plan.installed, built_at=_now()
    )


def _record_build(plan: ImagePlan, image_id: str) -> None:
    """Hand the build to launch and connect; a push of the same image keeps its digest."""
    record = image_record(plan, image_id)
    try:
        previous = read_record(plan.project_root, record.platform)
    except DaskboxError:
        previous = None
    if previous is not None and previous.image_id == image_id and previous.pinned:
        record = record.pushed(previous.pinned, previous.pushed_at or "")
    write_record(plan.project_root, record)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def push_image(
    plan: ImagePlan, engine: ContainerEngine | None = None, progress: Progress = print
) -> PushResult:
    """Push the content tag and ``latest``; a no-op when the registry already has both."""
    engine = engine or DockerEngine()
    local = engine.local_image(plan.reference)
    if local is None:
        raise PushError(f"{plan.reference} is not built: run `invoke build push`")
    pushed = _already_pushed(engine, plan.image, local)
    if pushed is not None and _already_pushed(engine, plan.moving, local) is not None:
        _record_push(plan, local.id, pushed)
        progress(f"{plan.reference} is already in the registry ({pushed.digest})")
        return PushResult(pushed, 0, len(local.layers), 0)
    progress(f"pushing {plan.reference}")
    result = engine.push(plan.image, progress)
    engine.tag(local.id, plan.moving)
    moving = engine.push(plan.moving, _quiet)
    if moving.reference.digest != result.reference.digest:
        raise PushError(f"registry stored {plan.moving} at a different digest than {plan.image}")
    _record_push(plan, local.id, result.reference)
    progress(
        f"pushed {result.reference.pinned} ({result.layers_pushed} layer(s), "
        f"{result.bytes_uploaded} bytes uploaded, {result.layers_skipped} already there)"
    )
    return result


def _record_push(plan: ImagePlan, image_id: str, pushed: ImageRef) -> None:
    """The build's record, now with the digest launch pins the VM to."""
    write_record(plan.project_root, image_record(plan, image_id).pushed(pushed.pinned, _now()))


def _already_pushed(
    engine: ContainerEngine, reference: ImageRef, local: LocalImage
) -> ImageRef | None:
    remote = engine.remote_digest(reference)
    if remote is None or f"{reference.repository}@{remote}" not in local.repo_digests:
        return None
    return reference.with_digest(remote)


def find_pushed(reference: str, engine: ContainerEngine | None = None) -> str | None:
    """The digest-pinned ``repo@sha256:...`` if the registry has ``reference``, else None."""
    image = ImageRef.parse(reference)
    digest = (engine or DockerEngine()).remote_digest(image)
    return None if digest is None else image.with_digest(digest).pinned


def source_revision(project_root: Path) -> str:
    """The project's git commit (``-dirty`` when it has changes), or ``unknown``."""
    try:
        head = subprocess.run(
            ["git", "-C", str(project_root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(project_root), "status", "--porcelain", "."],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")
