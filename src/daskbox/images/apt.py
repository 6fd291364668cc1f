"""Fetch the Debian packages of ``[tool.daskbox] apt-packages`` on the host, for the base image.

apt runs in a throwaway container of the base image with the host's network (apt checks the
archive's signatures and each .deb's hash against them) and only downloads; the image build then
installs the .debs with dpkg, still with no network.   [side effects: Docker, files]
"""

from __future__ import annotations

import hashlib
import io
import os
import shlex
import shutil
import tarfile
from pathlib import Path

from daskbox._tasks import Progress
from daskbox.errors import DockerfileError, ImageBuildError
from daskbox.images.cache import cache_dir, format_bytes, touch
from daskbox.images.engine import ContainerEngine
from daskbox.images.wheels import Artifact, file_sha256


def _hand_back(folder: str) -> str:
    """``; chown`` of what the container wrote to this user (POSIX only: Docker Desktop
    on Windows maps the files to the user itself, and there is no ``os.getuid``)."""
    getuid, getgid = getattr(os, "getuid", None), getattr(os, "getgid", None)
    if getuid is None or getgid is None:
        return ""
    return f"; chown -R {getuid()}:{getgid()} {folder}"


def fetch_debs(
    engine: ContainerEngine,
    base_image: str,
    packages: tuple[str, ...],
    progress: Progress = print,
    platform: str | None = None,
) -> tuple[Artifact, ...]:
    """Return the .debs installing ``packages`` on ``base_image`` needs (cached per base id).

    apt runs in a container of the base, so for a foreign platform under emulation.
    """
    key = hashlib.sha256("\0".join([engine.image_id(base_image), *sorted(packages)]).encode())
    folder = cache_dir("debs") / key.hexdigest()[:24]
    if not folder.is_dir():
        progress(f"downloading apt packages {', '.join(packages)} for {base_image}")
        scratch = folder.with_suffix(".part")
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        script = (
            "set -e; apt-get update -qq; "
            "apt-get install --download-only --yes --no-install-recommends -qq "
            + " ".join(shlex.quote(p) for p in packages)
            + "; cp /var/cache/apt/archives/*.deb /out/ 2>/dev/null || true"
            + _hand_back("/out")
        )
        try:
            engine.run(base_image, ["sh", "-c", script], {str(scratch): "/out"}, platform)
        except ImageBuildError as error:
            shutil.rmtree(scratch, ignore_errors=True)
            raise DockerfileError(
                f"cannot fetch apt-packages {', '.join(packages)} for {base_image} ({error}): "
                "check the names in [tool.daskbox] apt-packages (`apt-cache search NAME`)"
            ) from None
        scratch.replace(folder)
        debs = sorted(folder.glob("*.deb"))
        size = sum(deb.stat().st_size for deb in debs)
        progress(f"downloaded {len(debs)} .deb(s), {format_bytes(size)}")
    touch(folder)
    return tuple(Artifact(path, file_sha256(path)) for path in sorted(folder.glob("*.deb")))


def deb_paths(deb: Path) -> set[str]:
    """Absolute paths of the files a .deb installs (its ``data.tar.*``; a .deb is an ar
    archive), for the shared-library check."""
    with deb.open("rb") as stream:
        if stream.read(8) != b"!<arch>\n":
            return set()
        while header := stream.read(60):
            name = header[:16].decode().strip().rstrip("/")
            size = int(header[48:58].decode().strip())
            data = stream.read(size)
            if size % 2:
                stream.read(1)
            if name.startswith("data.tar"):
                with tarfile.open(fileobj=io.BytesIO(data)) as archive:
                    return {"/" + m.name.removeprefix("./") for m in archive if not m.isdir()}
    return set()
