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
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from packaging.utils import parse_wheel_filename

from daskbox import __version__, contract
from daskbox._files import write_atomically
from daskbox._tasks import Progress
from daskbox.contract import DEFAULT_PLATFORM, STATE_DIR
from daskbox.errors import (
    ConfigError,
    DaskboxError,
    DockerfileError,
    ImageBuildError,
    MissingLibrariesError,
    PushError,
)
from daskbox.image_ref import ImageRef, repository_component
from daskbox.images import dockerfile as layout
from daskbox.images.apt import deb_paths, fetch_debs
from daskbox.images.base import BaseImage, resolve_base
from daskbox.images.cache import CacheLimits, format_bytes, prune
from daskbox.images.context import ContextFile, write_context
from daskbox.images.dockerfile import DockerfilePlan, render
from daskbox.images.engine import (
    BuildStepFailed,
    ContainerEngine,
    DockerEngine,
    LocalImage,
    PushResult,
)
from daskbox.images.environment import (
    Environment,
    Platform,
    Source,
    fits,
    installed_set_digest,
)
from daskbox.images.layers import LAYERS_FORMAT, entrypoint_layer, user_layer, venv_layer
from daskbox.images.libraries import (
    ElfFile,
    Loader,
    Verdict,
    describe_missing,
    describe_warnings,
    elf_files_in_tar,
    missing_libraries,
    scan_layer,
    tar_paths,
)
from daskbox.images.lock import export_environment
from daskbox.images.settings import ImageSettings, load_settings
from daskbox.images.wheels import (
    Artifact,
    FetchedDistributions,
    build_local_wheels,
    fetch_index_distributions,
    is_sdist,
    pip_version,
    wheel_content_digest,
)
from daskbox.record import ImageRecord, platform_slug, read_record, write_record

MOVING_TAG = "latest"  # the default platform's; another platform's is latest-<os>-<arch>
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
    base: BaseImage
    environment: Environment
    image: ImageRef  # repository:contenttag
    dockerfile_plan: DockerfilePlan
    dockerfile: str
    local_wheels: tuple[Artifact, ...]
    entrypoint_files: tuple[tuple[str, bytes], ...]
    installed: Mapping[str, str]  # name -> version of every distribution the image installs

    @property
    def reference(self) -> str:
        """``repository:contenttag`` as text (what gcloud's launch looks up)."""
        return str(self.image)

    @property
    def base_digest(self) -> str:
        """The base image's content identity (platform manifest digest, or local id)."""
        return self.base.digest

    @property
    def platform(self) -> str:
        """The target platform, e.g. ``linux/arm64``."""
        return self.environment.target.oci

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
        """The same repository tagged ``latest`` (``latest-linux-arm64`` for arm64), moved to
        each new build for this platform."""
        return self.image.with_tag(moving_tag(self.platform))


def moving_tag(platform: str) -> str:
    """``latest`` for the default platform (what ``docker pull REPO`` gives an amd64 host),
    ``latest-<os>-<arch>`` for another, so that building one platform never moves the tag
    of the other."""
    return MOVING_TAG if platform == DEFAULT_PLATFORM else f"{MOVING_TAG}-{platform_slug(platform)}"


def plan_image(
    project_root: Path,
    overrides: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    engine: ContainerEngine | None = None,
) -> ImagePlan:
    """Resolve the base for the target platform, export the environment, build the project's
    wheels and render the Dockerfile.

    ``overrides`` holds task flags / invoke config under [tool.daskbox]'s key names. Docker
    is asked for the base image's identity and files (pulling it for the platform when it is
    not local); both are cached, so a plan with nothing changed needs no network. The
    project's wheels land in a content-addressed cache folder, so concurrent plans of one
    project never touch each other's files.
    """
    project_root = project_root.resolve()
    settings = load_settings(project_root, overrides)
    repository = ImageRef.parse(settings.repository)
    if repository.tag or repository.digest:
        raise ConfigError(
            f"[tool.daskbox] repository {settings.repository!r} must not carry a tag or digest: "
            "daskbox tags images by content"
        )
    progress = progress or _quiet
    base = resolve_base(engine or DockerEngine(), settings.base_image, settings.platform, progress)
    target = Platform.of(settings.platform, base.python_version)
    _check_python(base, target)
    environment = export_environment(project_root, target, settings.groups, settings.extras)
    local_wheels = _local_wheels(project_root, environment, progress)
    refuse_host_only_wheels(local_wheels, target)
    entrypoint_files = image_entrypoint_files()
    installed = _installed(environment, local_wheels)
    dockerfile_plan = DockerfilePlan(
        base_image=base.from_reference,
        platform=target.oci,
        interpreter=base.interpreter,
        lock_hash=environment.lock_hash,
        groups=environment.groups,
        has_project_layer=bool(local_wheels),
        apt_packages=settings.apt_packages,
        sdists=_sdists(environment),
        build_apt_packages=settings.build_apt_packages,
        pip_wheel=f"pip-{pip_version()}-py3-none-any.whl",
        labels=_labels(environment, settings, installed, base.digest),
    )
    text = render(dockerfile_plan)
    tag = _content_tag(environment, base.digest, text, entrypoint_files, local_wheels)
    return ImagePlan(
        project_root=project_root,
        settings=settings,
        base=base,
        environment=environment,
        image=repository.with_tag(tag),
        dockerfile_plan=dockerfile_plan,
        dockerfile=text,
        local_wheels=local_wheels,
        entrypoint_files=entrypoint_files,
        installed=installed,
    )


def _check_python(base: BaseImage, target: Platform) -> None:
    """The project's wheels and the venv's bytecode are made by the local CPython, and the
    environment check compares versions: the image's minor version must be the local one."""
    local = ".".join(platform.python_version().split(".")[:2])
    if target.python_minor != local:
        raise ConfigError(
            f"base image {base.name} has CPython {base.python_version} but daskbox runs on "
            f"{platform.python_version()}: use python:{platform.python_version()}-slim-bookworm "
            f"as base-image, or run daskbox from CPython {target.python_minor}"
        )


def _sdists(environment: Environment) -> tuple[tuple[str, str], ...]:
    """(name, sdist file) of each index distribution the lock has no target wheel for."""
    found = []
    for requirement in environment.index_requirements:
        if requirement.has_wheel_for(environment.target):
            continue
        sdists = [name for name in requirement.files if is_sdist(name)]
        if not sdists:
            raise DockerfileError(
                f"poetry.lock has neither a {environment.target.label} wheel nor an sdist of "
                f"{requirement.name}=={requirement.version} (it has {', '.join(requirement.files)}"
                "): pin a version with linux wheels (`poetry add NAME@VERSION`) or drop it "
                "from the image's groups"
            )
        found.append((str(requirement.name), sdists[0]))
    return tuple(found)


def refuse_host_only_wheels(wheels: tuple[Artifact, ...], target: Platform) -> None:
    """Wheels built on the host (the project, path/git/URL dependencies) must install on the
    target: a compiled one built for this machine is refused by name."""
    for wheel in wheels:
        if not fits(wheel.filename, target):
            name = parse_wheel_filename(wheel.filename)[0]
            raise DockerfileError(
                f"{name} was built on this machine as {wheel.filename}, which does not install "
                f"on {target.label}: build the image for this machine's platform, or publish "
                f"{name} with {target.oci} wheels (or an sdist) and lock it from an index"
            )


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


def _installed(environment: Environment, local_wheels: tuple[Artifact, ...]) -> dict[str, str]:
    """Name -> version of everything the image installs: locked index distributions and the
    project's own wheels."""
    installed = {
        str(r.name): r.version or "" for r in environment.requirements if r.source is Source.INDEX
    }
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
        f"layers-{LAYERS_FORMAT}",
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


@dataclass(frozen=True)
class PreparedLayers:
    """The runtime layers, made on the host (each a deterministic tar)."""

    user: Artifact
    venv: Artifact
    entrypoint: Artifact
    project: Artifact | None


def prepare_layers(plan: ImagePlan, fetched: FetchedDistributions) -> PreparedLayers:
    """Make (or find cached) every layer the runtime image ADDs."""
    return PreparedLayers(
        user=user_layer(plan.base),
        venv=venv_layer(fetched.wheels, plan.base),
        entrypoint=entrypoint_layer(plan.entrypoint_files, contract.ENTRYPOINT_ROOT),
        project=venv_layer(plan.local_wheels, plan.base, skeleton=False)
        if plan.local_wheels
        else None,
    )


def context_files(
    plan: ImagePlan,
    layers: PreparedLayers,
    fetched: FetchedDistributions,
    debs: tuple[Artifact, ...] = (),
    build_debs: tuple[Artifact, ...] = (),
) -> dict[str, ContextFile]:
    """The build context: Dockerfile, the prepared layers, and what the stages need."""
    files = {
        "Dockerfile": ContextFile(data=plan.dockerfile.encode()),
        layout.USER_LAYER: ContextFile(path=layers.user.path),
        layout.VENV_LAYER: ContextFile(path=layers.venv.path),
        layout.ENTRYPOINT_LAYER: ContextFile(path=layers.entrypoint.path),
    }
    if layers.project is not None:
        files[layout.PROJECT_LAYER] = ContextFile(path=layers.project.path)
    if plan.settings.apt_packages:
        files[f"{layout.APT_DIR}/"] = ContextFile()
        for deb in debs:
            files[f"{layout.APT_DIR}/{deb.filename}"] = ContextFile(path=deb.path)
    if plan.dockerfile_plan.sdists:
        pinned = fetched.build_requirements_txt().encode()
        files[layout.BUILD_REQUIREMENTS] = ContextFile(data=pinned)
        assert fetched.pip_wheel is not None
        groups = (
            (layout.BUILD_DEBS, build_debs),
            (layout.BUILD_WHEELS, fetched.build_wheels),
            (layout.BUILD_PIP, (fetched.pip_wheel,)),
            (layout.SDISTS_DIR, tuple(sdist for _, sdist in fetched.sdists)),
        )
        for folder, artifacts in groups:
            files[f"{folder}/"] = ContextFile()
            for artifact in artifacts:
                files[f"{folder}/{artifact.filename}"] = ContextFile(path=artifact.path)
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

    ``force`` rebuilds without Docker's layer cache (the prepared layers are the same bytes,
    so the registry still has them). The compiled extensions' libraries are checked before
    anything is built; a failed build leaves no image.
    """
    engine = engine or DockerEngine()
    existing = engine.local_image(plan.reference)
    replaced = existing if force else None
    if existing is not None and not force:
        engine.tag(existing.id, plan.moving)
        _record_build(plan, existing.id)
        progress(f"{plan.reference} is up to date")
        return BuildResult(existing.id, plan.image, built=False)
    base = resolve_base(engine, plan.settings.base_image, plan.platform, progress)
    if base.digest != plan.base.digest:
        # The tag names the planned base; building on another would break that promise.
        raise ImageBuildError(
            f"base image {plan.settings.base_image} changed since the plan "
            f"({plan.base.digest[:19]}): run the build again"
        )
    fetched = fetch_index_distributions(plan.environment, progress)
    debs: tuple[Artifact, ...] = ()
    build_debs: tuple[Artifact, ...] = ()
    if plan.settings.apt_packages:
        debs = fetch_debs(
            engine, base.from_reference, plan.settings.apt_packages, progress, plan.platform
        )
    if plan.dockerfile_plan.sdists:
        build_debs = fetch_debs(
            engine,
            base.from_reference,
            ("build-essential", *plan.settings.build_apt_packages),
            progress,
            plan.platform,
        )
    layers = prepare_layers(plan, fetched)
    check_libraries(plan, layers, debs)
    files = context_files(plan, layers, fetched, debs, build_debs)
    size = sum(f.path.stat().st_size if f.path else len(f.data or b"") for f in files.values())
    progress(
        f"building {plan.reference} for {plan.platform} ({len(fetched.wheels)} locked wheels, "
        f"{len(fetched.sdists)} sdists, {len(plan.local_wheels)} project wheels; context "
        f"{format_bytes(size)}, network: none)"
    )
    lines: list[str] = []

    def relay(line: str) -> None:
        lines.append(line)
        progress(line)

    with write_context(files) as context:
        try:
            image_id = engine.build(
                context,
                plan.reference,
                {
                    layout.IMAGE_TAG_ARG: plan.image.tag or "",
                    layout.REVISION_ARG: source_revision(plan.project_root),
                },
                relay,
                no_cache=force,
                platform=plan.platform,
            )
        except BuildStepFailed as failure:
            raise _diagnose(plan, failure) from None
    _keep_stages(plan, engine, lines)
    if plan.dockerfile_plan.sdists:
        _check_built_libraries(plan, engine, image_id, layers, debs)
    engine.tag(image_id, plan.moving)
    if replaced is not None:
        _remove_replaced(engine, replaced.id, image_id)
    _record_build(plan, image_id)
    prune(CacheLimits.resolve(plan.settings.cache))
    progress(f"built {plan.reference} ({image_id[:19]})")
    return BuildResult(image_id, plan.image, built=True)


_STAGE_START = re.compile(r"^Step \d+/\d+ : FROM \S+(?: AS (\S+))?", re.IGNORECASE)
_STEP_DONE = re.compile(r"^ ---> ([0-9a-f]{12})$")
STAGES_REPOSITORY = "daskbox-stages"


def _keep_stages(plan: ImagePlan, engine: ContainerEngine, lines: list[str]) -> None:
    """Tag each builder stage's image (``daskbox-stages/<project>:<stage>-<os>-<arch>``), so
    it serves as the next build's cache without being a dangling image; the image that
    tag named before is removed (unless something else still uses it)."""
    stages: dict[str, str] = {}
    current = None
    for line in lines:
        start = _STAGE_START.match(line)
        if start:
            current = start[1]
            continue
        done = _STEP_DONE.match(line)
        if done and current:
            stages[current] = done[1]
    for stage, image in stages.items():
        name = ImageRef(
            f"{STAGES_REPOSITORY}/{repository_component(plan.environment.project_name)}",
            f"{stage}-{plan.platform.replace('/', '-')}",
        )
        previous = engine.local_image(str(name))
        engine.tag(image, name)
        if previous is not None:
            _remove_replaced(engine, previous.id, engine.image_id(image))


def _remove_replaced(engine: ContainerEngine, replaced: str, current: str) -> None:
    """Remove the image whose tags a build moved to ``current``, unless it is ``current`` or
    still has a tag of its own (a container using it makes the engine keep it too)."""
    if replaced == current:
        return
    image = engine.local_image(replaced)
    if image is not None and not image.tags:
        engine.remove_image(replaced)


def _image_files(plan: ImagePlan, layers: PreparedLayers, debs: tuple[Artifact, ...]) -> set[str]:
    """Absolute paths of the files the image will hold in library folders or the venv."""
    files = {f"{d}/{name}" for d in plan.base.library_dirs for name in plan.base.libraries}
    for deb in debs:
        files |= deb_paths(deb.path)
    for layer in (layers.venv, layers.project):
        if layer is not None:
            files |= scan_layer(layer.path).paths
    return files


def check_libraries(plan: ImagePlan, layers: PreparedLayers, debs: tuple[Artifact, ...]) -> None:
    """Refuse, before building, a venv whose compiled extensions need a library the image
    will not have, as ld.so would look for it (the soname and, when Debian says which
    package ships it, that package); only a GPU's libraries are a warning."""
    scans = [scan_layer(layer.path) for layer in (layers.venv, layers.project) if layer]
    elves = [elf for scan in scans for elf in scan.elves]
    venv = {path for scan in scans for path in scan.paths}
    _judge_libraries(plan, elves, _image_files(plan, layers, debs), venv)


def _judge_libraries(
    plan: ImagePlan, elves: list[ElfFile], files: set[str], venv: set[str]
) -> None:
    """Warn about missing GPU-only libraries; raise for any other missing library."""
    base = plan.base
    loader = Loader.over(
        plan.platform, elves, files, base.library_dirs, base.preloaded, base.main_rpath
    )
    missing = missing_libraries(loader, plan.settings.ignore_missing_libraries)
    programs = {elf.path for elf in elves if elf.kind == "executable"}
    verdict = Verdict.of(missing, venv, programs)
    if verdict.warnings:
        print(describe_warnings(verdict.warnings), file=sys.stderr, flush=True)
    if verdict.errors:
        errors = list(verdict.errors)
        raise MissingLibrariesError(
            describe_missing(errors, plan.platform),
            describe_missing(errors, plan.platform, verbose=True),
        )


def _check_built_libraries(
    plan: ImagePlan,
    engine: ContainerEngine,
    image_id: str,
    layers: PreparedLayers,
    debs: tuple[Artifact, ...],
) -> None:
    """The same check for what the sdist stage compiled, read back from the built image."""
    (venv,) = engine.read_paths(image_id, [contract.VENV]).values()
    if venv is None:
        return
    parent = str(PurePosixPath(contract.VENV).parent)
    built = tar_paths(venv, parent)
    assert venv.fileobj is not None
    venv.fileobj.seek(0)
    with tarfile.open(fileobj=venv.fileobj) as archive:
        elves = list(elf_files_in_tar(archive, parent))
    try:
        _judge_libraries(plan, elves, _image_files(plan, layers, debs) | built, built)
    except MissingLibrariesError:
        engine.remove_image(image_id)
        raise


def _diagnose(plan: ImagePlan, failure: BuildStepFailed) -> DaskboxError:
    """A failed sdist build as one line: the package, what was missing, the fix."""
    lines = failure.output
    marks = [i for i, line in enumerate(lines) if line.startswith(layout.BUILDING_MARKER)]
    if not marks:
        return failure
    package = lines[marks[-1]].split(":", 1)[1].strip()
    after = lines[marks[-1] + 1 :]
    text = "\n".join(after)
    header = re.search(r"fatal error: ([\w./+-]+): No such file or directory", text)
    tool = re.search(r"(?:command|No such file or directory:) '([\w./+-]+)'", text)
    if header:
        cause = f"the header {header[1]} is missing"
        fix = (
            "add the Debian -dev package that provides it to [tool.daskbox] "
            "build-apt-packages (`apt-file search " + header[1] + "`)"
        )
    elif tool:
        cause = f"the program {tool[1]} failed or is missing"
        fix = "add the Debian package that provides it to [tool.daskbox] build-apt-packages"
    else:
        errors = [line.strip() for line in after if "error" in line.lower()]
        cause = (errors or [failure.args[0]])[0][:300]
        fix = "see the build output above; pin a version with wheels for " + plan.platform
    return ImageBuildError(
        f"building the sdist of {package} for {plan.platform} failed: {cause}: {fix}"
    )


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
    """Push the content tag and the platform's ``latest``; a no-op when the registry already
    has both."""
    engine = engine or DockerEngine()
    local = engine.local_image(plan.reference)
    if local is None:
        raise PushError(f"{plan.reference} is not built: run `invoke build push`")
    return push_recorded(plan.project_root, image_record(plan, local.id), engine, progress)


def push_recorded(
    project_root: Path,
    record: ImageRecord,
    engine: ContainerEngine | None = None,
    progress: Progress = print,
) -> PushResult:
    """Push the image ``record`` names (what ``invoke build`` built, with its groups and
    extras), and add the pushed digest to the record."""
    engine = engine or DockerEngine()
    image = ImageRef.parse(record.reference)
    moving = image.with_tag(moving_tag(record.platform))
    local = engine.local_image(record.reference)
    if local is None:
        raise PushError(
            f"{record.reference}, recorded by `invoke build`, is not a local image any more: "
            f"run `{rebuild_command(record)}`"
        )
    record = replace(record, image_id=local.id)
    pushed = _already_pushed(engine, image, local)
    if pushed is not None and _already_pushed(engine, moving, local) is not None:
        write_record(project_root, record.pushed(pushed.pinned, _now()))
        progress(f"{record.reference} is already in the registry ({pushed.digest})")
        return PushResult(pushed, 0, len(local.layers), 0)
    progress(f"pushing {record.reference}")
    result = engine.push(image, progress)
    engine.tag(local.id, moving)
    moved = engine.push(moving, _quiet)
    if moved.reference.digest != result.reference.digest:
        raise PushError(f"registry stored {moving} at a different digest than {image}")
    write_record(project_root, record.pushed(result.reference.pinned, _now()))
    progress(
        f"pushed {result.reference.pinned} ({result.layers_pushed} layer(s), "
        f"{result.bytes_uploaded} bytes uploaded, {result.layers_skipped} already there)"
    )
    return result


def rebuild_command(record: ImageRecord) -> str:
    """The ``invoke build ... push`` that builds the image of ``record`` again."""
    flags = [f"--with {group}" for group in record.groups if group != "main"]
    flags += [f"--extras {extra}" for extra in record.extras]
    if record.platform != DEFAULT_PLATFORM:
        flags.append(f"--platform {record.platform}")
    return " ".join(["invoke build", *flags, "push"])


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
