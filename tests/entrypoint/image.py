"""A minimal daskbox-shaped image holding only the entrypoint, built as the images contract
says (until the images pipeline is used here): /opt/venv with distributed + psutil at this
venv's versions, the entrypoint package copied to /opt/daskbox/daskbox/entrypoint,
PYTHONPATH=/opt/daskbox, the non-root user with the images component's uid. The gcloud
tests add the lock-hash environment and labels a real build sets."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path

import docker

from daskbox.images.dockerfile import USER_ID

ENTRYPOINT_SOURCE = Path(__file__).resolve().parents[2] / "src" / "daskbox" / "entrypoint"

DOCKERFILE = """\
FROM {base_image}
COPY wheels /tmp/wheels
RUN python -m venv --without-pip /opt/venv \\
 && PIP_CONFIG_FILE=/dev/null python -m pip --python /opt/venv/bin/python install \\
      --no-index --find-links /tmp/wheels \\
      --no-cache-dir --disable-pip-version-check -q distributed psutil \\
 && rm -rf /tmp/wheels \\
 && useradd --uid {uid} --create-home daskbox
COPY daskbox /opt/daskbox/daskbox
ENV PYTHONPATH=/opt/daskbox{env}
{labels}USER daskbox
EXPOSE 8786 8787
ENTRYPOINT ["/opt/venv/bin/python", "-m", "daskbox.entrypoint"]
"""


def _download_wheels(destination: Path, constraints: Path) -> None:
    """distributed + psutil and their dependencies, pinned to what this venv has installed."""
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    constraints.write_text(frozen)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-c",
            str(constraints),
            "-d",
            str(destination),
            "distributed",
            "psutil",
        ],
        check=True,
        capture_output=True,
    )


def build_entrypoint_image(
    client: docker.DockerClient,
    base_image: str,
    workdir: Path,
    *,
    tag: str | None = None,
    env: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> str:
    """Build the image with the classic builder and no network; return its tag.

    ``env`` and ``labels`` are added as the images component adds its ``DASKBOX_*``
    variables and ``dev.daskbox.*`` labels (values without spaces or quotes).
    """
    context = workdir / "context"
    _download_wheels(context / "wheels", workdir / "constraints.txt")
    package = context / "daskbox"
    shutil.copytree(
        ENTRYPOINT_SOURCE, package / "entrypoint", ignore=shutil.ignore_patterns("__pycache__")
    )
    (package / "__init__.py").write_text(
        '"""daskbox, as copied into the image: the entrypoint and the contract only."""\n'
    )
    shutil.copy2(ENTRYPOINT_SOURCE.parent / "contract.py", package / "contract.py")
    dockerfile = DOCKERFILE.format(
        base_image=base_image,
        uid=USER_ID,
        env="".join(f" {key}={value}" for key, value in (env or {}).items()),
        labels="".join(f"LABEL {key}={value}\n" for key, value in (labels or {}).items()),
    )
    (context / "Dockerfile").write_text(dockerfile)
    tag = tag or f"daskbox-entrypoint-test:{uuid.uuid4().hex[:12]}"
    client.images.build(path=str(context), tag=tag, network_mode="none", rm=True, forcerm=True)
    return tag
