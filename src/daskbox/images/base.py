"""The base image for one target platform: its identity, its interpreter, its users, its libraries.

``resolve_base`` decides what ``FROM`` names and what identifies the base's content (the digest
of the *platform's* manifest when it came from a registry, else the local image id), pulling
it for the target platform when it is missing. ``inspect_base`` reads, without running
anything (so without emulation for a foreign platform), what the host needs to prepare the
image's layers: the CPython version and path, ``/etc/passwd`` and ``/etc/group``, and the
shared libraries it ships. Both results are cached in ``~/.cache/daskbox/base`` (keyed by the
local image id or by name and platform), so a no-op build needs neither the registry nor a
container.   [side effects: Docker, network, files]
"""

from __future__ import annotations

import json
import posixpath
import tarfile
from dataclasses import dataclass, replace
from pathlib import Path

from daskbox._files import write_atomically
from daskbox._tasks import Progress
from daskbox.errors import ImageBuildError
from daskbox.image_ref import ImageRef
from daskbox.images.cache import cache_dir
from daskbox.images.engine import ContainerEngine, LocalImage
from daskbox.images.libraries import ElfFile, Loader, elf_files_in_tar
from daskbox.images.registry import platform_manifest

_FORMAT = 2  # 2: what the interpreter loads (names, DT_RPATH)
# Where Debian-based images keep shared libraries: ld.so.conf's folders (/usr/local/lib, where
# the official python images keep libpython, and the multiarch ones), then ld.so's defaults.
_LIBRARY_DIRS = (
    "/usr/local/lib",
    "/usr/local/lib/{triplet}",
    "/lib/{triplet}",
    "/usr/lib/{triplet}",
    "/lib",
    "/usr/lib",
)
_TRIPLETS = {"linux/amd64": "x86_64-linux-gnu", "linux/arm64": "aarch64-linux-gnu"}


@dataclass(frozen=True)
class BaseImage:
    """The base image as one target sees it."""

    name: str  # as configured, e.g. python:3.11.7-slim-bookworm
    from_reference: str  # what the Dockerfile's FROM names
    digest: str  # the content's identity: platform manifest digest, or the local image id
    image_id: str  # the local engine's id (the config digest)
    platform: str
    python_version: str  # x.y.z of the image's CPython
    interpreter: str  # its absolute path, e.g. /usr/local/bin/python3.11
    passwd: str  # /etc/passwd
    group: str  # /etc/group
    libraries: tuple[str, ...]  # file names in the image's library folders (sonames included)
    # What the running interpreter has loaded (every name its objects are known by) and its
    # effective DT_RPATH, $ORIGIN expanded: where ld.so starts when Python dlopens a module.
    preloaded: tuple[str, ...] = ()
    main_rpath: tuple[str, ...] = ()

    @property
    def library_dirs(self) -> tuple[str, ...]:
        """The folders the dynamic loader searches in this image by default."""
        return tuple(d.format(triplet=_TRIPLETS[self.platform]) for d in _LIBRARY_DIRS)


def resolve_base(
    engine: ContainerEngine, name: str, platform: str, progress: Progress
) -> BaseImage:
    """The base image ``name`` for ``platform``: found locally, else pulled by the digest of
    that platform's manifest (never by the index's)."""
    reference = ImageRef.parse(name)
    local = None if reference.digest else engine.local_image(name)
    if local is not None and local.platform == platform:
        return inspect_base(engine, name, name, _local_identity(reference, local, platform), local)
    resolutions = cache_dir("base") / "resolved.json"
    known = _read_json(resolutions)
    key = f"{name} {platform}"
    pinned = known.get(key)
    image = engine.local_image(pinned) if isinstance(pinned, str) else None
    if image is None:
        progress(f"resolving base image {name} for {platform}")
        manifest = platform_manifest(reference, platform)
        by_digest = ImageRef(reference.repository, digest=manifest.digest)
        pinned = str(by_digest)
        image = engine.local_image(pinned)
        if image is None:
            progress(f"pulling base image {pinned} ({platform})")
            engine.pull(by_digest, platform)
            image = engine.local_image(pinned)
        if image is None or image.platform != platform:
            raise ImageBuildError(f"pulling base image {pinned} gave no {platform} image")
        write_atomically(resolutions, json.dumps({**known, key: pinned}, indent=1, sort_keys=True))
    assert isinstance(pinned, str)
    return inspect_base(engine, name, pinned, pinned.partition("@")[2], image)


def _local_identity(reference: ImageRef, local: LocalImage, platform: str) -> str:
    """A local base's identity: the platform digest it was pulled by when known, else its id."""
    pinned = [
        d.partition("@")[2]
        for d in local.repo_digests
        if d.partition("@")[0] == reference.repository
    ]
    if not pinned:
        return local.id  # built locally (a stand-in): its id is all there is
    confirmed = cache_dir("base") / "platform-digests.json"
    known = _read_json(confirmed)
    if local.id in known:
        return str(known[local.id])
    try:
        manifest = platform_manifest(reference, platform)
    except ImageBuildError:
        return local.id  # offline: the id is still an exact identity
    if manifest.config_digest != local.id:
        return local.id  # the tag moved on in the registry; this is what is local
    write_atomically(confirmed, json.dumps({**known, local.id: manifest.digest}, indent=1))
    return manifest.digest


def inspect_base(
    engine: ContainerEngine, name: str, from_reference: str, digest: str, image: LocalImage
) -> BaseImage:
    """What the host needs to know about the base, read from its files (cached by image id)."""
    cached = cache_dir("base") / f"{image.id.replace(':', '-')}.json"
    data = _read_json(cached)
    if data.get("format") != _FORMAT:
        data = {"format": _FORMAT, **_read_base(engine, image)}
        write_atomically(cached, json.dumps(data, indent=1, sort_keys=True))
    return BaseImage(
        name=name,
        from_reference=from_reference,
        digest=digest,
        image_id=image.id,
        platform=image.platform,
        python_version=str(data["python_version"]),
        interpreter=str(data["interpreter"]),
        passwd=str(data["passwd"]),
        group=str(data["group"]),
        libraries=tuple(str(name) for name in data["libraries"]),  # type: ignore[attr-defined]
        preloaded=tuple(str(name) for name in data["preloaded"]),  # type: ignore[attr-defined]
        main_rpath=tuple(str(name) for name in data["main_rpath"]),  # type: ignore[attr-defined]
    )


def _read_base(engine: ContainerEngine, image: LocalImage) -> dict[str, object]:
    version = image.env.get("PYTHON_VERSION", "")
    if not version.count(".") == 2:
        raise ImageBuildError(
            f"base image {image.id[:19]} does not say its CPython version (ENV PYTHON_VERSION, "
            "as the official python images do): use a python:<x.y.z>-slim-bookworm base"
        )
    minor = ".".join(version.split(".")[:2])
    triplet = _TRIPLETS.get(image.platform)
    if triplet is None:
        raise ImageBuildError(f"base image {image.id[:19]} is {image.platform}: not supported")
    candidates = [f"/usr/local/bin/python{minor}", f"/usr/bin/python{minor}"]
    folders = [d.format(triplet=triplet) for d in _LIBRARY_DIRS]
    found = engine.read_paths(image.id, [*candidates, "/etc/passwd", "/etc/group", *folders])
    interpreter = next((path for path in candidates if found[path] is not None), None)
    if interpreter is None:
        raise ImageBuildError(
            f"base image {image.id[:19]} has no python{minor} in /usr/local/bin or /usr/bin"
        )
    libraries: set[str] = set()
    for folder in folders:
        archive = found[folder]
        if archive is None:
            continue
        for member in archive.getmembers():
            parts = member.name.split("/")
            if len(parts) == 2 and not member.isdir():  # directly in the folder
                libraries.add(parts[1])
    program = interpreter
    link = found[interpreter]
    entry = link.getmembers()[0] if link is not None and link.getmembers() else None
    if entry is not None and entry.issym():  # Debian's python3.11 behind the /usr/local name
        target = posixpath.join(posixpath.dirname(interpreter), entry.linkname)
        program = posixpath.normpath(target)
        found.update(engine.read_paths(image.id, [program]))
    preloaded, main_rpath = _interpreter_loads(image.platform, program, found, folders)
    return {
        "preloaded": preloaded,
        "main_rpath": main_rpath,
        "python_version": version,
        "interpreter": interpreter,
        "passwd": _text(found["/etc/passwd"], "passwd"),
        "group": _text(found["/etc/group"], "group"),
        "libraries": sorted(libraries),
    }


def _interpreter_loads(
    platform: str, interpreter: str, found: dict[str, tarfile.TarFile | None], folders: list[str]
) -> tuple[list[str], list[str]]:
    """The names of what ``interpreter`` loads at start and its effective DT_RPATH, by
    mapping it as ld.so does over the ELF files of the base's library folders."""
    elves: dict[str, ElfFile] = {}
    links: dict[str, str] = {}
    for path in [interpreter, *folders]:
        archive = found[path]
        if archive is None:
            continue
        parent = posixpath.dirname(path)
        for member in archive.getmembers():
            if member.issym():
                target = posixpath.join(parent, posixpath.dirname(member.name), member.linkname)
                links[posixpath.join(parent, member.name)] = posixpath.normpath(target)
        elves.update((elf.path, elf) for elf in elf_files_in_tar(archive, parent, depth=1))
    for link, target in links.items():
        for _ in range(8):  # a chain of links, as ldconfig's soname links are
            target = links.get(target, target)
        if target in elves:
            elves[link] = replace(elves[target], path=link)
    main = elves.get(interpreter)
    if main is None:
        return [], []
    loader = Loader.over(platform, elves.values(), elves, folders)
    loaded, _ = loader.load(interpreter)
    origin = posixpath.dirname(interpreter)
    rpath = [f.replace("${ORIGIN}", origin).replace("$ORIGIN", origin) for f in main.search_rpath]
    return sorted(name for name in loaded if "/" not in name), rpath


def _text(archive: tarfile.TarFile | None, name: str) -> str:
    if archive is None:
        return ""
    stream = archive.extractfile(name)
    return stream.read().decode() if stream is not None else ""


def _read_json(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


__all__ = ["BaseImage", "inspect_base", "resolve_base"]
