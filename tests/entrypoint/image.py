"""A minimal image with only the entrypoint, built like the real one (until the images
pipeline is used here): /opt/venv with distributed + psutil at this venv's versions,
the entrypoint package copied to /opt/daskbox/daskbox/entrypoint, PYTHONPATH=/opt/daskbox."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import docker

ENTRYPOINT_SOURCE = Path(__file__).resolve().parents[2] / "src" / "daskbox" / "entrypoint"

DOCKERFILE = """\
FROM {base_image}
COPY wheels /tmp/wheels
RUN python -m venv --without-pip /opt/venv \\
 && PIP_CONFIG_FILE=/dev/null python -m pip --python /opt/venv/bin/python install \\
      --no-index --find-links /tmp/wheels \\
      --no-cache-dir --disable-pip-version-check -q distributed psutil \\
 && rm -rf /tmp/wheels \\
 && useradd --create-home daskbox
COPY daskbox /opt/daskbox/daskbox
ENV PYTHONPATH=/opt/daskbox
USER daskbox
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


def build_entrypoint_image(client: docker.DockerClient, base_image: str, workdir: Path) -> str:
    """Build the image with the classic builder and no network; return its tag."""
    context = workdir / "context"
    _download_wheels(context / "wheels", workdir / "constraints.txt")
    package = context / "daskbox"
    shutil.copytree(
        ENTRYPOINT_SOURCE, package / "entrypoint", ignore=shutil.ignore_patterns("__pycache__")
    )
    (package / "__init__.py").write_text(
        '"""daskbox, as copied into the image: the entrypoint only."""\n'
    )
    (context / "Dockerfile").write_text(DOCKERFILE.format(base_image=base_image))
    tag = f"daskbox-entrypoint-test:{uuid.uuid4().hex[:12]}"
    client.images.build(path=str(context), tag=tag, network_mode="none", rm=True, forcerm=True)
    return tag
