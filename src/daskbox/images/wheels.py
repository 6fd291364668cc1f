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
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from daskbox._pyproject import TOMLDecodeError, parse_toml
from daskbox._tasks import Progress
from daskbox.errors import DockerfileError
from daskbox.images.environment import Environment, Platform, Requirement, Source, file_url_path


@dataclass(frozen=True)
class Artifact:
    """A wheel or sdist on the host, ready to go into the build context."""

    path: Path
    sha256: str

    @property
    def filename(self) -> str:
        """The file's name, as it goes into the build context."""
        return self.path.name


def cache_root() -> Path:
    """Where fetched wheels are kept by hash: ``$XDG_CACHE_HOME/daskbox/wheels``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "daskbox" / "wheels"


@dataclass(frozen=True)
class FetchedDistributions:
    """Everything the environment stage installs from, all on the host."""

    wheels: tuple[Artifact, ...]  # one per index distribution that has a target wheel
    sdists: tuple[Artifact, ...] = ()  # hash-checked sdists of the others
    build_wheels: tuple[Artifact, ...] = ()  # the sdists' build requirements, as target wheels


def fetch_index_distributions(
    environment: Environment, progress: Progress = print, cache: Path | None = None
) -> FetchedDistributions:
    """Return a hash-checked target wheel per index requirement, or its sdist if it has none.

    Only what's missing from the cache is downloaded. Raises DockerfileError naming every
    locked distribution that has neither a target wheel nor an sdist.
    """
    cache = cache or cache_root()
    target = environment.target
    found: dict[str, Artifact] = {}
    missing: list[Requirement] = []
    for requirement in environment.index_requirements:
        wheel = _cached(requirement, cache, lambda name: _fits(name, target))
        if wheel is None:
            missing.append(requirement)
        else:
            found[requirement.name] = wheel
    if missing:
        progress(f"downloading {len(missing)} wheel(s) for {target.label}")
        with tempfile.TemporaryDirectory(prefix="daskbox-wheels-") as scratch:
            downloaded, without_wheel = _download_wheels(missing, environment, Path(scratch))
            for requirement in missing:
                if requirement not in without_wheel:
                    found[requirement.name] = _store(requirement, downloaded, cache)
    sdist_requirements = [r for r in environment.index_requirements if r.name not in found]
    if not sdist_requirements:
        return FetchedDistributions(tuple(found[r.name] for r in environment.index_requirements))
    sdists = tuple(_fetch_sdist(r, environment, cache, progress) for r in sdist_requirements)
    build_wheels = _fetch_build_requirements(sdists, environment, cache, progress)
    return FetchedDistributions(
        tuple(found[r.name] for r in environment.index_requirements if r.name in found),
        sdists,
        build_wheels,
    )


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


def _fits(filename: str, target: Platform) -> bool:
    try:
        tags = parse_wheel_filename(filename)[3]
    except InvalidWheelFilename:
        return False
    return not tags.isdisjoint(target.tags)


def _is_sdist(filename: str) -> bool:
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
        sys.executable, "-m", "pip", "download", "--dest", str(folder / "out"),
        "--progress-bar", "off", "--quiet", "-r", str(requirements_file), *options,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, check=False)


def _target_options(target: Platform) -> list[str]:
    options = ["--only-binary=:all:", "--implementation", "cp", "--abi", target.abi,
               "--python-version", target.python_minor]  # fmt: skip
    for platform_tag in target.platforms:
        options += ["--platform", platform_tag]
    return options


def _download_wheels(
    requirements: list[Requirement], environment: Environment, folder: Path
) -> tuple[list[Path], list[Requirement]]:
    """Download target wheels; return them and the requirements that have no target wheel."""
    options = ["--no-deps", "--require-hashes", *_target_options(environment.target)]
    lines = [r.pip_line for r in requirements]
    index_options = environment.index_options
    if _pip_download(lines, folder, *options, index_options=index_options).returncode == 0:
        return sorted((folder / "out").glob("*.whl")), []
    # Find the ones without a wheel one by one (pip stops at the first).
    without_wheel = []
    for requirement in requirements:
        probe = folder / f"probe-{requirement.name}"
        probed = _pip_download([requirement.pip_line], probe, *options, index_options=index_options)
        if probed.returncode != 0:
            without_wheel.append(requirement)
            continue
        for path in (probe / "out").glob("*.whl"):
            (folder / "out").mkdir(exist_ok=True)
            shutil.move(path, folder / "out" / path.name)
    return sorted((folder / "out").glob("*.whl")), without_wheel


def _fetch_sdist(
    requirement: Requirement, environment: Environment, cache: Path, progress: Progress
) -> Artifact:
    cached = _cached(requirement, cache, _is_sdist)
    if cached is not None:
        return cached
    progress(f"{requirement.name}=={requirement.version} has no wheel for "
             f"{environment.target.label}: fetching its sdist")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="daskbox-sdist-") as scratch:
        folder = Path(scratch)
        result = _pip_download(
            [requirement.pip_line], folder, "--no-deps", "--require-hashes", "--no-binary=:all:",
            index_options=environment.index_options,
        )  # fmt: skip
        downloaded = [p for p in (folder / "out").glob("*") if _is_sdist(p.name)]
        if result.returncode != 0 or not downloaded:
            _raise_no_wheel([requirement], environment.target, result.stderr)
        return _store(requirement, downloaded, cache)


def _fetch_build_requirements(
    sdists: tuple[Artifact, ...], environment: Environment, cache: Path, progress: Progress
) -> tuple[Artifact, ...]:
    """Platform wheels for the sdists' [build-system] requires (resolved, not locked)."""
    requires: list[str] = []
    for sdist in sdists:
        requires += [r for r in _build_requires(sdist.path) if r not in requires]
    progress(f"downloading build requirements for sdists: {', '.join(requires)}")
    folder = (
        cache
        / "build-requirements"
        / hashlib.sha256(
            "\0".join([environment.target.python_version, *sorted(requires)]).encode()
        ).hexdigest()[:24]
    )
    if not (folder / "out").is_dir():
        scratch = folder.with_suffix(".part")
        shutil.rmtree(scratch, ignore_errors=True)
        result = _pip_download(
            requires, scratch, *_target_options(environment.target),
            index_options=environment.index_options,
        )  # fmt: skip
        if result.returncode != 0:
            shutil.rmtree(scratch, ignore_errors=True)
            last = (result.stderr.strip().splitlines() or [""])[-1]
            raise DockerfileError(
                f"cannot fetch build requirements {', '.join(requires)} for "
                f"{', '.join(s.filename for s in sdists)}: {last}"
            )
        shutil.rmtree(folder, ignore_errors=True)
        scratch.replace(folder)
    return tuple(Artifact(p, file_sha256(p)) for p in sorted((folder / "out").glob("*.whl")))


def _build_requires(sdist: Path) -> list[str]:
    """[build-system] requires of an sdist; setuptools' legacy default when it has none."""
    default = ["setuptools>=40.8.0", "wheel"]
    try:
        with tarfile.open(sdist) as archive:
            member = next(
                (m for m in archive.getmembers() if m.name.count("/") == 1
                 and m.name.endswith("/pyproject.toml")), None,
            )  # fmt: skip
            if member is None:
                return default
            stream = archive.extractfile(member)
            data = parse_toml(stream.read().decode()) if stream else {}
    except (tarfile.TarError, TOMLDecodeError, UnicodeDecodeError):
        return default
    requires = data.get("build-system", {}).get("requires")
    return [str(r) for r in requires] if isinstance(requires, list) else default


def _raise_no_wheel(requirements: list[Requirement], target: Platform, stderr: str) -> None:
    names = ", ".join(f"{r.name}=={r.version}" for r in requirements)
    detail = next(
        (line.strip() for line in reversed(stderr.splitlines()) if line.startswith("ERROR")), ""
    )
    hint = "" if not detail else f" ({detail.removeprefix('ERROR: ')})"
    raise DockerfileError(
        f"no hash-matching wheel or sdist for {target.label} of {names}{hint}: "
        "pin a version that has linux wheels (`poetry add NAME@VERSION`) "
        "or drop it from the image's groups"
    )


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

    Each is kept in ``cache`` under a key of its source (a directory's file names, sizes and
    modification times; a git URL with its locked commit; a URL with its locked hashes), so
    a build with nothing changed builds nothing. These go into the image's last layer, after
    every locked index distribution.
    """
    sources: list[tuple[str, Requirement | Path]] = [
        (_source_key(r), r) for r in environment.local_requirements
    ]
    if environment.package_mode:
        sources.append((_directory_key(project_root), project_root))
    return tuple(_built(key, source, cache, progress) for key, source in sources)


def _built(key: str, source: Requirement | Path, cache: Path, progress: Progress) -> Artifact:
    """The wheel cached under ``key``, built into a private folder first when missing (so
    concurrent builds of one project never see each other's half-made files)."""
    folder = cache / key
    found = sorted(folder.glob("*.whl")) if folder.is_dir() else []
    if len(found) == 1:
        os.utime(folder)  # recently used: kept by the pruning of old builds
        return Artifact(found[0], file_sha256(found[0]))
    cache.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="build-", dir=cache))
    try:
        if isinstance(source, Path):
            progress(f"building a wheel for {source}")
            _pip_wheel(str(source), scratch)
        else:
            _build_wheel(source, scratch, progress)
        shutil.rmtree(folder, ignore_errors=True)
        scratch.replace(folder)  # same file system: atomic
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    (wheel,) = folder.glob("*.whl")
    return Artifact(wheel, file_sha256(wheel))


# Never part of a wheel's sources: VCS data, environments, caches, build output.
_NOT_SOURCES = frozenset(
    {".git", ".hg", ".svn", ".venv", "venv", ".daskbox", "__pycache__", ".mypy_cache",
     ".pytest_cache", ".ruff_cache", ".tox", ".nox", "node_modules", "dist", "build"}
)  # fmt: skip


def _directory_key(directory: Path) -> str:
    """A key that changes whenever a file that could go into the directory's wheel changes:
    names, sizes and modification times (stat only, so checking costs milliseconds)."""
    digest = hashlib.sha256(f"{_BUILD_KEY_FORMAT}\0{sys.version}\0".encode())
    for folder, subfolders, files in os.walk(directory):
        subfolders[:] = sorted(
            name for name in subfolders
            if name not in _NOT_SOURCES and not name.endswith(".egg-info")
        )  # fmt: skip
        for name in sorted(files):
            path = Path(folder, name)
            stat = path.stat()
            relative = path.relative_to(directory).as_posix()
            digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return "dir-" + digest.hexdigest()[:32]


_BUILD_KEY_FORMAT = 1


def _source_key(requirement: Requirement) -> str:
    """A directory by its files; a git URL (it names the locked commit) or a hash-checked URL
    by itself: their content cannot change under the same key."""
    if requirement.source is Source.DIRECTORY and requirement.url is not None:
        return _directory_key(file_url_path(requirement.url))
    identity = "\0".join([str(_BUILD_KEY_FORMAT), sys.version, str(requirement.url),
                          *requirement.hashes])  # fmt: skip
    return f"{requirement.source.value}-" + hashlib.sha256(identity.encode()).hexdigest()[:32]


def _build_wheel(requirement: Requirement, folder: Path, progress: Progress) -> Artifact:
    if requirement.url is None:
        raise DockerfileError(f"{requirement.name} has no URL in the export: run `poetry lock`")
    if requirement.source is Source.DIRECTORY:
        directory = file_url_path(requirement.url)
        progress(f"building a wheel for {directory}")
        return _pip_wheel(str(directory), folder)
    if requirement.source is Source.URL:
        return _build_url(requirement, folder, progress)
    # A git dependency: the export pins the commit, which is what identifies its content.
    progress(f"building a wheel for {requirement.name} from {requirement.url}")
    return _pip_wheel(requirement.url, folder)


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
        return _pip_wheel(str(archive), folder)


def _pip_wheel(requirement: str, folder: Path) -> Artifact:
    """``pip wheel --no-deps`` (the project's own PEP 517 backend, in pip's isolated build
    environment) into ``folder``."""
    with tempfile.TemporaryDirectory(prefix="daskbox-build-") as scratch:
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                   "--disable-pip-version-check", "--wheel-dir", scratch, requirement]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        built = sorted(Path(scratch).glob("*.whl"))
        if result.returncode != 0 or len(built) != 1:
            last = (result.stderr.strip().splitlines() or ["no wheel produced"])[-1]
            raise DockerfileError(f"cannot build a wheel for {requirement}: {last}")
        path = folder / built[0].name
        shutil.move(built[0], path)
    return Artifact(path, file_sha256(path))


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


def install_overlay(wheels: tuple[Artifact, ...], target: Platform, folder: Path) -> Path:
    """Install ``wheels`` into ``folder`` laid out as the image's venv (an overlay of /opt/venv).

    Uses ``installer`` (the library pip and Poetry install wheels with), with the image's
    interpreter in script shebangs, so the image needs no RUN step for the project layer.
    No bytecode is written: sources from the context have fixed mtimes, so Python compiles
    on import instead.
    """
    from installer import install
    from installer.destinations import SchemeDictionaryDestination
    from installer.sources import WheelFile

    from daskbox.contract import VENV

    site_packages = folder / "lib" / f"python{target.python_minor}" / "site-packages"
    for wheel in wheels:
        name = str(parse_wheel_filename(wheel.filename)[0])
        scheme = {
            "purelib": str(site_packages),
            "platlib": str(site_packages),
            "headers": str(folder / "include" / "site" / f"python{target.python_minor}" / name),
            "scripts": str(folder / "bin"),
            "data": str(folder),
        }
        destination = SchemeDictionaryDestination(
            scheme, interpreter=f"{VENV}/bin/python", script_kind="posix"
        )
        with WheelFile.open(wheel.path) as source:
            install(source, destination, {"INSTALLER": b"daskbox\n"})
    return folder
