"""Fetch the Debian packages of ``[tool.daskbox] apt-packages`` on the host, for the base image.

apt runs in a throwaway container of the base image with the host's network (apt checks the
archive's signatures and each .deb's hash against them) and only downloads; the image build then
installs the .debs with dpkg, still with no network.   [side effects: Docker, files]
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
from pathlib import Path

from daskbox._tasks import Progress
from daskbox.errors import DockerfileError, ImageBuildError
from daskbox.images.engine import ContainerEngine
from daskbox.images.wheels import Artifact, cache_root, file_sha256


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
    cache: Path | None = None,
) -> tuple[Artifact, ...]:
    """Return the .debs installing ``packages`` on ``base_image`` needs (cached per base id)."""
    key = hashlib.sha256("\0".join([engine.image_id(base_image), *sorted(packages)]).encode())
    folder = (cache or cache_root().parent / "debs") / key.hexdigest()[:24]
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
            engine.run(base_image, ["sh", "-c", script], {str(scratch): "/out"})
        except ImageBuildError as error:
            shutil.rmtree(scratch, ignore_errors=True)
            raise DockerfileError(
                f"cannot fetch apt-packages {', '.join(packages)} for {base_image} ({error}): "
                "check the names in [tool.daskbox] apt-packages (`apt-cache search NAME`)"
            ) from None
        scratch.replace(folder)
    return tuple(Artifact(path, file_sha256(path)) for path in sorted(folder.glob("*.deb")))
