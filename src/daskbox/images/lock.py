"""pyproject.toml + poetry.lock -> Environment, through Poetry's own freshness check and export.

The export is the one ``poetry export -f requirements.txt`` runs (poetry-plugin-export's
``Exporter``); this module only checks its preconditions, evaluates its markers for the target
and turns its lines into ``Requirement`` values. Results are cached under ``.daskbox/cache``
keyed by the bytes of pyproject.toml and poetry.lock, so a no-op ``invoke build push`` does not
pay for loading Poetry.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement
from packaging.requirements import Requirement as Pep508Requirement

from daskbox import __version__
from daskbox._pyproject import project_name
from daskbox.errors import ConfigError, LockfileError
from daskbox.images.environment import (
    REQUIRED_DISTRIBUTIONS,
    Environment,
    Platform,
    Requirement,
    Source,
    file_url_path,
    normalize,
)

_CACHE_FORMAT = 2
_EXPORT_PREFIX = "export-"
_INDEX_OPTIONS = ("--index-url", "--extra-index-url", "--trusted-host", "--find-links")


def lock_hash(project_root: Path) -> str:
    """sha256 hex of poetry.lock's bytes (the image's DASKBOX_LOCK_HASH)."""
    return hashlib.sha256(_lock_path(project_root).read_bytes()).hexdigest()


def export_environment(
    project_root: Path,
    target: Platform,
    groups: tuple[str, ...] = ("main",),
    extras: tuple[str, ...] = (),
) -> Environment:
    """Return the locked set for ``groups`` and ``extras`` on ``target``, or raise LockfileError.

    Reads pyproject.toml and poetry.lock (and the cache); writes the cache on a miss.
    """
    lock_path = _lock_path(project_root)
    pyproject_bytes = (project_root / "pyproject.toml").read_bytes()
    lock_digest = hashlib.sha256(lock_path.read_bytes()).hexdigest()
    key = hashlib.sha256(
        json.dumps(
            [
                _CACHE_FORMAT,
                __version__,
                str(project_root),
                hashlib.sha256(pyproject_bytes).hexdigest(),
                lock_digest,
                sorted(groups),
                sorted(extras),
                asdict(target),
            ]
        ).encode()
    ).hexdigest()
    # The lock's hash leads the name, so exports of an older lock can be pruned while other
    # group/extra selections of the current one stay cached.
    cache_file = (
        project_root / ".daskbox" / "cache" / f"{_EXPORT_PREFIX}{lock_digest[:16]}-{key[:32]}.json"
    )
    cached = _read_cache(cache_file)
    if cached is not None:
        return cached
    environment = _export(project_root, target, groups, extras, lock_digest)
    _write_cache(cache_file, environment)
    _prune_exports(cache_file.parent, keep=f"{_EXPORT_PREFIX}{lock_digest[:16]}-")
    return environment


def _lock_path(project_root: Path) -> Path:
    lock_path = project_root / "poetry.lock"
    if not lock_path.is_file():
        raise LockfileError(f"no poetry.lock in {project_root}: run `poetry lock` first")
    return lock_path


def _export(
    project_root: Path,
    target: Platform,
    groups: tuple[str, ...],
    extras: tuple[str, ...],
    lock_digest: str,
) -> Environment:
    # Poetry is imported here only: the cached path never pays for it.
    from cleo.io.buffered_io import BufferedIO
    from poetry.core.constraints.version import Version
    from poetry.factory import Factory
    from poetry_plugin_export.exporter import Exporter

    try:
        poetry = Factory().create_poetry(project_root)
    except Exception as error:  # Poetry raises bare RuntimeError/ValueError for invalid projects
        first_line = (
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        )
        raise ConfigError(
            f"Poetry cannot read {project_root / 'pyproject.toml'}: {first_line}"
        ) from None
    if not poetry.locker.is_fresh():
        raise LockfileError(
            f"{project_root / 'poetry.lock'} is stale against pyproject.toml: run `poetry lock`"
        )
    constraint = poetry.package.python_constraint
    if not constraint.allows(Version.parse(target.python_version)):
        raise LockfileError(
            f"{project_root.name} requires Python {poetry.package.python_versions} but the image's "
            f"Python is {target.python_version}: widen requires-python and run `poetry lock`, "
            "or run daskbox from a matching Python"
        )
    known_groups = set(poetry.package.dependency_group_names(include_optional=True)) | {"main"}
    unknown = sorted(set(groups) - known_groups)
    if unknown:
        raise ConfigError(
            f"unknown dependency group(s) {', '.join(unknown)} for {project_root.name}: "
            f"choose from {', '.join(sorted(known_groups))}"
        )
    known_extras = {str(name) for name in poetry.package.extras}
    unknown = sorted({str(normalize(e)) for e in extras} - known_extras)
    if unknown:
        raise ConfigError(
            f"unknown extra(s) {', '.join(unknown)} for {project_root.name}: "
            f"choose from {', '.join(sorted(known_extras)) or '(none defined)'}"
        )

    io = BufferedIO()
    exporter = Exporter(poetry, io).only_groups([normalize(g) for g in groups])
    exporter.with_extras([normalize(e) for e in extras]).with_hashes(True).with_urls(True)
    exporter.export(Exporter.FORMAT_REQUIREMENTS_TXT, project_root, io)
    requirements, index_options = parse_export(io.fetch_output(), target)

    exported = {r.name for r in requirements}
    missing = [name for name in REQUIRED_DISTRIBUTIONS if name not in exported]
    if missing:
        raise LockfileError(
            f"{', '.join(missing)} missing from the exported set of {project_root.name} "
            f"(groups: {', '.join(groups)}): run `poetry add distributed` (the image's "
            "entrypoint needs distributed and psutil)"
        )
    return Environment(
        project_name=normalize(poetry.package.name),
        project_version=str(poetry.package.version),
        package_mode=poetry.is_package_mode,
        target=target,
        groups=tuple(groups),
        extras=tuple(sorted(str(normalize(e)) for e in extras)),
        lock_hash=lock_digest,
        requirements=requirements,
        index_options=index_options,
    )


def parse_export(text: str, target: Platform) -> tuple[tuple[Requirement, ...], tuple[str, ...]]:
    """Turn requirements.txt lines from Poetry's export into requirements for ``target``.

    Markers are evaluated against the target (linux x86_64, its CPython version), so the
    result is exactly what pip would install there.
    """
    logical_lines = text.replace("\\\n", " ").splitlines()
    requirements: dict[str, Requirement] = {}
    index_options: list[str] = []
    for raw in logical_lines:
        line = " ".join(raw.split())
        if not line or line.startswith("#"):
            continue
        if line.startswith(_INDEX_OPTIONS):
            index_options.append(line)
            continue
        requirement = _parse_line(line, target)
        if requirement is not None:
            requirements[requirement.name] = requirement
    return tuple(requirements[name] for name in sorted(requirements)), tuple(index_options)


def _parse_line(line: str, target: Platform) -> Requirement | None:
    spec, *hash_parts = line.split(" --hash=")
    hashes = tuple(sorted(part.strip() for part in hash_parts))
    editable = spec.startswith("-e ")
    if editable:
        # Poetry writes develop path dependencies as "-e file:///path ; markers" (no name).
        url, _, marker = spec[3:].partition(" ; ")
        name = project_name(file_url_path(url))
        spec = f"{name} @ {url}" + (f" ; {marker}" if marker else "")
    try:
        parsed = Pep508Requirement(spec)
    except InvalidRequirement as error:
        raise LockfileError(f"cannot read Poetry's export line {spec!r}: {error}") from None
    if parsed.marker is not None and not parsed.marker.evaluate(target.marker_environment):
        return None
    name = normalize(parsed.name)
    if parsed.url is None:
        pins = [s.version for s in parsed.specifier if s.operator in ("==", "===")]
        return Requirement(name, pins[0] if pins else None, Source.INDEX, hashes=hashes)
    if parsed.url.startswith("file:"):
        path = file_url_path(parsed.url)
        source = Source.DIRECTORY if path.is_dir() else Source.URL
        return Requirement(name, None, source, url=parsed.url, hashes=hashes)
    if "+" in parsed.url.split(":", 1)[0]:
        return Requirement(name, None, Source.VCS, url=parsed.url, hashes=hashes)
    return Requirement(name, None, Source.URL, url=parsed.url, hashes=hashes)


def _read_cache(cache_file: Path) -> Environment | None:
    try:
        data: dict[str, Any] = json.loads(cache_file.read_text(encoding="utf-8"))
        data["target"] = Platform(**{**data["target"], "glibc": tuple(data["target"]["glibc"])})
        data["requirements"] = tuple(
            Requirement(**{**r, "source": Source(r["source"]), "hashes": tuple(r["hashes"])})
            for r in data["requirements"]
        )
        for key in ("groups", "extras", "index_options"):
            data[key] = tuple(data[key])
        return Environment(**data)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_cache(cache_file: Path, environment: Environment) -> None:
    data = asdict(environment)
    data["requirements"] = [{**r, "source": r["source"].value} for r in data["requirements"]]
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        (cache_file.parent / ".gitignore").write_text("*\n", encoding="utf-8")
        temporary = cache_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=1), encoding="utf-8")
        temporary.replace(cache_file)
    except OSError:
        pass  # the cache only saves time


def _prune_exports(folder: Path, keep: str) -> None:
    """Delete cached exports of other lock contents (names not starting with ``keep``)."""
    for path in folder.glob(f"{_EXPORT_PREFIX}*.json"):
        if not path.name.startswith(keep):
            path.unlink(missing_ok=True)
