"""Fetch and build every wheel the image installs, on the host, for the target platform.

Index distributions are downloaded by pip for the target (``--platform``/``--abi``/
``--python-version``, ``--only-binary=:all:``) and checked against the lock's hashes
(``--require-hashes``), into a content-addressed cache (``~/.cache/daskbox/wheels``), so a
rebuild downloads nothing. The project itself and path/git/URL dependencies are built into
wheels here too (URL archives first downloaded against the lock's hashes); the image build
then needs no network at all.   [side effects: pip, files]
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import parse_wheel_filename

from daskbox._files import write_atomically
from daskbox._pyproject import TOMLDecodeError, parse_toml
from daskbox._tasks import Progress
from daskbox.errors import DockerfileError
from daskbox.images.cache import cache_dir, format_bytes, touch
from daskbox.images.environment import (
    Environment,
    Platform,
    Requirement,
    Source,
    file_url_path,
    fits,
)


@dataclass(frozen=True)
class Artifact:
    """A wheel or sdist on the host, ready to go into the build context."""

    path: Path
    sha256: str

    @property
    def filename(self) -> str:
        """The file's name, as it goes into the build context."""
        return self.path.name


@dataclass(frozen=True)
class FetchedDistributions:
    """Everything the image installs from, all on the host."""

    wheels: tuple[Artifact, ...]  # one per index distribution that has a target wheel
    sdists: tuple[tuple[str, Artifact], ...] = ()  # (name, hash-checked sdist) of the others
    build_wheels: tuple[Artifact, ...] = ()  # the sdists' build requirements, as target wheels
    pip_wheel: Artifact | None = None  # pip itself, which builds the sdists in the image

    def build_requirements_txt(self) -> str:
        """The sdists' build requirements pinned by hash (what the sdist stage installs)."""
        lines = []
        for wheel in self.build_wheels:
            name, version, *_ = parse_wheel_filename(wheel.filename)
            lines.append(f"{name}=={version} --hash=sha256:{wheel.sha256}\n")
        return "".join(sorted(lines))


def fetch_index_distributions(
    environment: Environment, progress: Progress = print, cache: Path | None = None
) -> FetchedDistributions:
    """Return a hash-checked target wheel per index requirement, or its sdist if the lock has
    no wheel for the target: one pip call for all missing wheels, one for all missing sdists.

    Only what's missing from the cache is downloaded. Raises DockerfileError naming the
    locked distribution pip could not fetch, with pip's own reason.
    """
    cache = cache or cache_dir("wheels")
    target = environment.target
    wanted = environment.index_requirements
    as_sdist = [r for r in wanted if not r.has_wheel_for(target)]
    found: dict[str, Artifact] = {}
    for requirement in wanted:
        accept = is_sdist if requirement in as_sdist else (lambda name: fits(name, target))
        cached = _cached(requirement, cache, accept)
        if cached is not None:
            found[requirement.name] = cached
    missing_wheels = [r for r in wanted if r.name not in found and r not in as_sdist]
    missing_sdists = [r for r in as_sdist if r.name not in found]
    for batch, kind, options in (
        (missing_wheels, "wheel", _target_options(target)),
        (missing_sdists, "sdist", ["--no-binary=:all:"]),
    ):
        if not batch:
            continue
        progress(f"downloading {len(batch)} {kind}(s) for {target.label}")
        with tempfile.TemporaryDirectory(prefix="daskbox-download-") as scratch:
            folder = Path(scratch)
            result = _pip_download(
                [r.pip_line for r in batch],
                folder,
                "--no-deps",
                "--require-hashes",
                *options,
                index_options=environment.index_options,
            )
            if result.returncode != 0:
                _raise_not_fetched(batch, target, kind, result.stderr)
            downloaded = sorted((folder / "out").glob("*"))
            for requirement in batch:
                found[requirement.name] = _store(requirement, downloaded, cache)
        size = sum(found[r.name].path.stat().st_size for r in batch)
        progress(f"downloaded {len(batch)} {kind}(s), {format_bytes(size)}")
    for artifact in found.values():
        touch(artifact.path.parent)
    wheels = tuple(found[r.name] for r in wanted if r not in as_sdist)
    if not as_sdist:
        return FetchedDistributions(wheels)
    sdists = tuple((str(r.name), found[r.name]) for r in as_sdist)
    build_wheels = _fetch_build_requirements(
        tuple(s for _, s in sdists), environment, cache.parent / "build-requirements", progress
    )
    return FetchedDistributions(wheels, sdists, build_wheels, _pip_itself(cache.parent, progress))


def _cached(
    requirement: Requirement, cache: Path, accept: Callable[[str], bool]
) -> Artifact | None:
    for locked_hash in requirement.hashes:
        algorithm, _, hexdigest = locked_hash.partition(":")
        if algorithm != "sha256":
            continue
        folder = cache / "sha256" / hexdigest
        for path in sorted(folder.iterdir()) if folder.is_dir() else ():
            if accept(path.name):
                return Artifact(path, hexdigest)
    return None


def is_sdist(filename: str) -> bool:
    return filename.endswith((".tar.gz", ".zip", ".tar.bz2", ".tgz"))


def _pip_download(
    lines: list[str], folder: Path, *options: str, index_options: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """``pip download`` of requirement ``lines`` (after the lock's ``index_options``) into
    ``folder/out``; the caller reads the result's return code and stderr."""
    folder.mkdir(parents=True, exist_ok=True)
    requirements_file = folder / "requirements.txt"
    requirements_file.write_text(
        "".join(f"{line}\n" for line in [*index_options, *lines]), encoding="utf-8"
    )
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--dest",
        str(folder / "out"),
        "--progress-bar",
        "off",
        "--quiet",
        "-r",
        str(requirements_file),
        *options,
    ]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def _target_options(target: Platform) -> list[str]:
    options = [
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--abi",
        target.abi,
        "--python-version",
        target.python_minor,
    ]
    for platform_tag in target.platforms:
        options += ["--platform", platform_tag]
    return options


def _fetch_build_requirements(
    sdists: tuple[Artifact, ...], environment: Environment, cache: Path, progress: Progress
) -> tuple[Artifact, ...]:
    """Target wheels for the sdists' [build-system] requires: resolved once per set of
    requirements and target, then kept, and handed to the image pinned by their hashes."""
    requires: list[str] = []
    for sdist in sdists:
        requires += [r for r in _build_requires(sdist.path) if r not in requires]
    folder = (
        cache
        / hashlib.sha256(
            "\0".join(
                [environment.target.python_version, environment.target.machine, *sorted(requires)]
            ).encode()
        ).hexdigest()[:24]
    )
    if not (folder / "out").is_dir():
        progress(f"downloading build requirements for sdists: {', '.join(requires)}")
        scratch = folder.with_suffix(".part")
        shutil.rmtree(scratch, ignore_errors=True)
        result = _pip_download(
            requires,
            scratch,
            "--only-binary=:all:",
            *_target_options(environment.target),
            index_options=environment.index_options,
        )
        if result.returncode != 0:
            shutil.rmtree(scratch, ignore_errors=True)
            raise DockerfileError(
                f"cannot fetch build requirements {', '.join(requires)} for "
                f"{', '.join(s.filename for s in sdists)}: {_pip_reason(result.stderr)}"
            )
        shutil.rmtree(folder, ignore_errors=True)
        scratch.replace(folder)
    touch(folder)
    return tuple(Artifact(p, file_sha256(p)) for p in sorted((folder / "out").glob("*.whl")))


def pip_version() -> str:
    """The version of the pip running here (whose wheel builds sdists in the image)."""
    from importlib.metadata import version

    return version("pip")


def _pip_itself(cache: Path, progress: Progress) -> Artifact:
    """pip's own wheel (the version running here): it builds the sdists in the image, whose
    base need not have pip."""
    folder = cache / "build-requirements" / f"pip-{pip_version()}"
    if not folder.is_dir():
        progress(f"downloading pip {pip_version()} to build sdists in the image")
        scratch = folder.with_suffix(".part")
        shutil.rmtree(scratch, ignore_errors=True)
        result = _pip_download(
            [f"pip=={pip_version()}"], scratch, "--no-deps", "--only-binary=:all:"
        )
        if result.returncode != 0:
            shutil.rmtree(scratch, ignore_errors=True)
            raise DockerfileError(
                f"cannot download pip {pip_version()} ({_pip_reason(result.stderr)}): "
                "check the network or the package index"
            )
        scratch.replace(folder)
    touch(folder)
    (wheel,) = sorted((folder / "out").glob("pip-*.whl"))
    return Artifact(wheel, file_sha256(wheel))


def _build_requires(sdist: Path) -> list[str]:
    """[build-system] requires of an sdist; setuptools' legacy default when it has none."""
    default = ["setuptools>=40.8.0", "wheel"]
    try:
        with tarfile.open(sdist) as archive:
            member = next(
                (
                    m
                    for m in archive.getmembers()
                    if m.name.count("/") == 1 and m.name.endswith("/pyproject.toml")
                ),
                None,
            )
            if member is None:
                return default
            stream = archive.extractfile(member)
            data = parse_toml(stream.read().decode()) if stream else {}
    except (tarfile.TarError, TOMLDecodeError, UnicodeDecodeError):
        return default
    requires = data.get("build-system", {}).get("requires")
    return [str(r) for r in requires] if isinstance(requires, list) else default


def _raise_not_fetched(
    requirements: list[Requirement], target: Platform, kind: str, stderr: str
) -> None:
    """One line naming the distribution pip could not fetch (pip stops at the first) and why."""
    reason = _pip_reason(stderr)
    named = [r for r in requirements if re.search(rf"\b{re.escape(r.name)}\b", reason, re.I)]
    names = ", ".join(f"{r.name}=={r.version}" for r in (named or requirements))
    raise DockerfileError(
        f"no hash-matching {kind} for {target.label} of {names} ({reason}): "
        "check the network and the lock's index (`poetry lock` if a file changed), pin a "
        "version that has linux wheels (`poetry add NAME@VERSION`), or drop it from the "
        "image's groups"
    )


def _pip_reason(stderr: str) -> str:
    """pip's real reason in one line: its ERROR line, or the deepest network error; never its
    "note"/"hint" lines."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    network = [line for line in lines if "NewConnectionError" in line or "Errno" in line]
    if network:
        cause = re.search(r"\[Errno -?\d+\] ([^')\]]+)", network[-1])
        return cause[1] if cause else network[-1][:200]
    errors = [line for line in lines if line.startswith("ERROR:")]
    if errors:
        return errors[0].removeprefix("ERROR: ")[:300]
    kept = [line for line in lines if not line.startswith(("note:", "hint:", "╰─>", "│"))]
    return (kept or ["no output"])[-1][:300]


def _store(requirement: Requirement, downloaded: list[Path], cache: Path) -> Artifact:
    locked = {h.partition(":")[2] for h in requirement.hashes if h.startswith("sha256:")}
    for path in downloaded:
        digest = file_sha256(path)
        if digest not in locked:
            continue  # pip checked it already; this guards the cache's addressing
        folder = cache / "sha256" / digest
        folder.mkdir(parents=True, exist_ok=True)
        stored = folder / path.name
        if not stored.exists():
            partial = folder / (path.name + ".part")
            shutil.copyfile(path, partial)
            partial.replace(stored)
        return Artifact(stored, digest)
    raise DockerfileError(
        f"pip downloaded no file matching the lock's hashes for {requirement.name}"
    )


def build_local_wheels(
    project_root: Path, environment: Environment, cache: Path, progress: Progress = print
) -> tuple[Artifact, ...]:
    """The project (package mode) and its path/git/url dependencies as wheels, built on the host.

    Each is kept in ``cache`` under a key of its source (a directory's file names and
    contents, and its git version when the version is dynamic; a git URL with its locked
    commit; a URL with its locked hashes), so a build with nothing changed builds nothing.
    These go into the image's last layer, after every locked index distribution.
    """
    digests = _FileDigests(cache.parent / "local-sources.json")
    sources: list[tuple[Requirement | Path, Path | None]] = [
        (r, file_url_path(r.url) if r.source is Source.DIRECTORY and r.url else None)
        for r in environment.local_requirements
    ]
    if environment.package_mode:
        sources.append((project_root, project_root))
    wheels = tuple(_built(source, folder, digests, cache, progress) for source, folder in sources)
    digests.save()
    return wheels


def _built(
    source: Requirement | Path,
    directory: Path | None,
    digests: _FileDigests,
    cache: Path,
    progress: Progress,
) -> Artifact:
    """The wheel cached under its source's key, built into a private folder first when
    missing (so concurrent builds of one project never see each other's half-made files).

    A directory's wheel is kept under the key of the files as the build left them: a backend
    may rewrite pyproject.toml while it builds (poetry-dynamic-versioning) and restore it
    with its keys in another order, and the next build must find the wheel all the same.
    """
    if directory is not None:
        folder = cache / _directory_key(directory, digests)
    else:
        assert isinstance(source, Requirement)  # the project is a directory
        folder = cache / _source_key(source)
    found = sorted(folder.glob("*.whl")) if folder.is_dir() else []
    if len(found) == 1:
        os.utime(folder)  # recently used: kept by the pruning of old builds
        return Artifact(found[0], file_sha256(found[0]))
    cache.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="build-", dir=cache))
    try:
        if isinstance(source, Path):
            progress(f"building a wheel for {source}")
            _pip_wheel(str(source), scratch, "the project")
        else:
            _build_wheel(source, scratch, progress)
        if directory is not None:
            folder = cache / _directory_key(directory, digests)
        shutil.rmtree(folder, ignore_errors=True)
        scratch.replace(folder)  # same file system: atomic
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    (wheel,) = folder.glob("*.whl")
    return Artifact(wheel, file_sha256(wheel))


# Never part of a wheel's sources: VCS data, environments, caches, build output.
_NOT_SOURCES = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        ".daskbox",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
        ".nox",
        "node_modules",
        "dist",
        "build",
    }
)


class _FileDigests:
    """sha256 of source files, kept by path with the size and modification time they had:
    a file is read again only when its stat changed, so checking costs milliseconds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            known = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            known = None
        self.known: dict[str, list[Any]] = known if isinstance(known, dict) else {}
        self.seen: dict[str, list[Any]] = {}

    def digest(self, path: Path) -> str:
        stat = path.stat()
        key = str(path)
        entry = self.known.get(key)
        if not isinstance(entry, list) or entry[:2] != [stat.st_size, stat.st_mtime_ns]:
            entry = [stat.st_size, stat.st_mtime_ns, file_sha256(path)]
        self.seen[key] = entry
        return str(entry[2])

    def save(self) -> None:
        if self.seen != self.known:
            write_atomically(self.path, json.dumps(self.seen, sort_keys=True))


def _directory_key(directory: Path, digests: _FileDigests) -> str:
    """A key that changes whenever a file that could go into the directory's wheel changes
    (names and contents: a backend that rewrites pyproject.toml while it builds and restores
    it, as poetry-dynamic-versioning does, changes only modification times), or the git
    version a dynamic version is taken from."""
    digest = hashlib.sha256(f"{_BUILD_KEY_FORMAT}\0{sys.version}\0".encode())
    digest.update(_vcs_version(directory).encode() + b"\0")
    for folder, subfolders, files in os.walk(directory):
        subfolders[:] = sorted(
            name
            for name in subfolders
            if name not in _NOT_SOURCES and not name.endswith(".egg-info")
        )
        for name in sorted(files):
            path = Path(folder, name)
            relative = path.relative_to(directory).as_posix()
            digest.update(f"{relative}\0{digests.digest(path)}\n".encode())
    return "dir-" + digest.hexdigest()[:32]


_BUILD_KEY_FORMAT = 2


def _vcs_version(directory: Path) -> str:
    """``git describe`` of ``directory`` when its pyproject.toml declares a dynamic version
    (poetry-dynamic-versioning, setuptools-scm, hatch-vcs read it from git tags), else ""."""
    try:
        pyproject = parse_toml((directory / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, TOMLDecodeError):
        return ""
    dynamic = "version" in pyproject.get("project", {}).get("dynamic", [])
    if not dynamic and "poetry-dynamic-versioning" not in pyproject.get("tool", {}):
        return ""
    try:
        described = subprocess.run(
            ["git", "-C", str(directory), "describe", "--tags", "--long", "--always"],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return ""
    return described.stdout.strip()  # the latest tag, the distance to it and the commit


def _source_key(requirement: Requirement) -> str:
    """A git URL (it names the locked commit) or a hash-checked URL by itself: their content
    cannot change under the same key."""
    identity = "\0".join(
        [str(_BUILD_KEY_FORMAT), sys.version, str(requirement.url), *requirement.hashes]
    )
    return f"{requirement.source.value}-" + hashlib.sha256(identity.encode()).hexdigest()[:32]


def _build_wheel(requirement: Requirement, folder: Path, progress: Progress) -> Artifact:
    if requirement.url is None:
        raise DockerfileError(f"{requirement.name} has no URL in the export: run `poetry lock`")
    if requirement.source is Source.DIRECTORY:
        directory = file_url_path(requirement.url)
        progress(f"building a wheel for {directory}")
        return _pip_wheel(str(directory), folder, requirement.name)
    if requirement.source is Source.URL:
        return _build_url(requirement, folder, progress)
    # A git dependency: the export pins the commit, which is what identifies its content.
    progress(f"fetching {requirement.name} from {requirement.url} (once per locked commit)")
    return _pip_wheel(requirement.url, folder, requirement.name, git=True)


def _build_url(requirement: Requirement, folder: Path, progress: Progress) -> Artifact:
    """Download a URL dependency against the lock's hashes, then use or build that file."""
    if not requirement.hashes:
        raise DockerfileError(
            f"poetry.lock has no hash for {requirement.name} @ {requirement.url}: "
            "run `poetry lock` to record one"
        )
    progress(f"fetching {requirement.name} from {requirement.url} (hash-checked)")
    with tempfile.TemporaryDirectory(prefix="daskbox-url-") as scratch:
        result = _pip_download(
            [requirement.pip_line], Path(scratch), "--no-deps", "--require-hashes"
        )
        downloaded = sorted((Path(scratch) / "out").glob("*"))
        if result.returncode != 0 or len(downloaded) != 1:
            detail = (result.stderr.strip().splitlines() or ["nothing downloaded"])[-1]
            raise DockerfileError(
                f"cannot fetch {requirement.name} @ {requirement.url} matching poetry.lock's "
                f"hashes ({detail.strip()}): run `poetry lock` if the file changed on purpose"
            )
        archive = downloaded[0]
        if archive.name.endswith(".whl"):
            path = folder / archive.name
            shutil.move(archive, path)
            return Artifact(path, file_sha256(path))
        return _pip_wheel(str(archive), folder, requirement.name)


def _pip_wheel(source: str, folder: Path, name: str, git: bool = False) -> Artifact:
    """``pip wheel --no-deps`` (the project's own PEP 517 backend, in pip's isolated build
    environment) of ``source`` into ``folder``; a failure is one line with the real cause."""
    with tempfile.TemporaryDirectory(prefix="daskbox-build-") as scratch:
        command = [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
            "--wheel-dir",
            scratch,
            source,
        ]
        # SOURCE_DATE_EPOCH: backends that honour it write the same wheel every time.
        env = {**os.environ, "SOURCE_DATE_EPOCH": "315532800", "GIT_TERMINAL_PROMPT": "0"}
        result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
        built = sorted(Path(scratch).glob("*.whl"))
        if result.returncode != 0 or len(built) != 1:
            raise DockerfileError(_build_failure(name, source, result.stderr, git))
        path = folder / built[0].name
        shutil.move(built[0], path)
    return Artifact(path, file_sha256(path))


_EXCEPTION_LINE = re.compile(r"\b(\w+(?:Error|Exception)): (.+)$")


def _build_failure(name: str, source: str, stderr: str, git: bool) -> str:
    """What went wrong building ``name``, from pip's output: git's ``fatal:`` line, the
    backend's exception, or pip's ERROR line (never its "note"/"hint" lines), and the fix."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    fatal = [line.removeprefix("fatal: ") for line in lines if line.startswith("fatal: ")]
    raised = [m for m in map(_EXCEPTION_LINE.search, lines) if m]
    if git and fatal:
        return (
            f"cannot fetch {name} from {source}: {fatal[-1]}: check the network and the "
            "git URL in pyproject.toml (each locked commit is fetched once, then cached)"
        )
    if raised:
        kind, detail = raised[-1][1], raised[-1][2]
        # poetry-core: a declared package folder that is missing, or that is empty.
        empty = detail.endswith("does not contain any element")
        if kind == "ModuleOrPackageNotFoundError" or empty:
            return (
                f"cannot build {name} ({source}): the declared package folder is missing "
                f"({detail}): create that folder or fix `packages` in [tool.poetry] of its "
                "pyproject.toml (or, for an application that is no package, set "
                "package-mode = false there)"
            )
        if kind == "ModuleNotFoundError" and detail.startswith("No module named 'poetry."):
            # Poetry 1's `poetry.masonry.api` is in poetry, not in the poetry-core it requires.
            backend = detail.removeprefix("No module named ")
            return (
                f"cannot build {name} ({source}): its build-backend is {backend}, which "
                "only poetry itself provides: set build-backend = "
                '"poetry.core.masonry.api" in [build-system] of its pyproject.toml'
            )
        return (
            f"cannot build {name} ({source}): {kind}: {detail}: fix its build "
            f"(`pip wheel --no-deps {source}` shows the backend's whole output)"
        )
    return (
        f"cannot build {name} ({source}): {_pip_reason(stderr)}: fix its build "
        f"(`pip wheel --no-deps {source}` shows the backend's whole output)"
    )


def file_sha256(path: Path) -> str:
    """sha256 hex of the file's bytes, read in blocks (wheels can be large)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def wheel_content_digest(path: Path) -> str:
    """sha256 over a wheel's member names and bytes, blind to zip timestamps."""
    digest = hashlib.sha256()
    with zipfile.ZipFile(path) as archive:
        for name in sorted(archive.namelist()):
            digest.update(name.encode() + b"\0" + archive.read(name) + b"\0")
    return digest.hexdigest()
