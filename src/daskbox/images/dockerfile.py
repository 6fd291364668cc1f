"""DockerfilePlan -> Dockerfile text: one template, classic-builder syntax (no BuildKit).

Layer order follows how often things change: the system packages (apt-packages, installed
by dpkg in a stage of their own so only their installed files reach the image), the fixed
runtime settings (user, ports, PATH, entrypoint), the locked dependencies (one layer, copied
from a builder stage so no wheel, sdist or pip cache reaches the runtime image), daskbox's
entrypoint module, then the project's own wheels installed into a venv overlay (the only
layer a code change touches). The lock-dependent ENV and the labels come last: they add no
filesystem layer and don't bust the cache above."""

from __future__ import annotations

import json
from dataclasses import dataclass

from daskbox import __version__
from daskbox.contract import (
    DEFAULT_DASHBOARD_PORT,
    DEFAULT_SCHEDULER_PORT,
    ENTRYPOINT_MODULE,
    ENTRYPOINT_ROOT,
    ENV_GROUPS,
    ENV_IMAGE_TAG,
    ENV_LOCK_HASH,
    IMAGE_UID,
    IMAGE_USER,
    VENV,
)

PORTS = (DEFAULT_SCHEDULER_PORT, DEFAULT_DASHBOARD_PORT)

# Paths inside the build context.
REQUIREMENTS_FILE = "requirements.txt"
WHEELS_DIR = "wheels"  # locked wheels for the target
SDISTS_DIR = "sdists"  # locked sdists of distributions without a target wheel
BUILD_WHEELS_DIR = "build-wheels"  # their build requirements, as target wheels
APT_DIR = "apt"  # .debs for [tool.daskbox] apt-packages, downloaded on the host
SYSTEM_STAGE = "system-packages"
# In the system-packages stage: every file dpkg created or changed, laid out from /.
SYSTEM_ROOT = "/tmp/daskbox/root"
PROJECT_DIR = "project"  # the project's wheels, installed on the host into a venv overlay
ENTRYPOINT_DIR = "daskbox"

# Values that differ per build without changing the image's content come in as build args,
# so the Dockerfile (part of the content tag) stays the same.
IMAGE_TAG_ARG = "DASKBOX_IMAGE_TAG"
REVISION_ARG = "DASKBOX_REVISION"


@dataclass(frozen=True)
class DockerfilePlan:
    """Everything the template needs; assert on this, the template only does layout."""

    base_image: str
    lock_hash: str
    groups: tuple[str, ...]
    project_wheels: tuple[str, ...]  # wheel file names, installed into the project layer
    apt_packages: tuple[str, ...] = ()  # installed from .debs in the context
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def has_project_layer(self) -> bool:
        """Whether the project (or its path/git dependencies) adds the last layer."""
        return bool(self.project_wheels)


_PIP = f"python -m pip --isolated --disable-pip-version-check --python {VENV}/bin/python"

_TEMPLATE = """\
# Rendered by daskbox {version}. Built with `docker build --network none` by the classic
# builder: every file is in the context, fetched on the host and checked against poetry.lock.

# Builder: a venv with exactly the locked distributions, installed offline with hash checks.
FROM {base_image} AS environment
COPY {requirements} /tmp/daskbox/{requirements}
COPY {wheels}/ /tmp/daskbox/{wheels}/
# Locked distributions without a wheel for the target: their hash-checked sdists, built here
# with their build requirements (target wheels) also from the context. Usually empty.
COPY {sdists}/ /tmp/daskbox/{sdists}/
COPY {build_wheels}/ /tmp/daskbox/{build_wheels}/
RUN python -m venv --without-pip {venv} \\
 && {pip} install --no-index --no-deps --require-hashes --no-cache-dir \\
      --find-links /tmp/daskbox/{wheels} --find-links /tmp/daskbox/{sdists} \\
      --find-links /tmp/daskbox/{build_wheels} --requirement /tmp/daskbox/{requirements}

{system_stage}# Runtime: the base image, a non-root user, the venv, the entrypoint, the project.
FROM {base_image}
{system_copy}RUN useradd --create-home --uid {uid} --user-group --shell /usr/sbin/nologin {user}
USER {user}
WORKDIR /home/{user}
EXPOSE {ports}
ENV PATH={venv}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PYTHONPATH={entrypoint_root} \\
    PYTHONUNBUFFERED=1
ENTRYPOINT {entrypoint_argv}
COPY --from=environment {venv} {venv}
COPY {entrypoint}/ {entrypoint_root}/daskbox/
{project_copy}ARG {tag_arg}=unknown {revision_arg}=unknown
ENV {lock_hash_env}={lock_hash} \\
    {groups_env}={groups} \\
    {image_tag_env}=${tag_arg}
LABEL {labels} \\
      org.opencontainers.image.revision=${revision_arg}
"""


# dpkg runs in a stage of its own and only what it created or changed (ctime after a marker:
# dpkg keeps the archives' mtimes, but ctime is always "now") moves on to the runtime stage,
# so no .deb is left in any layer of the image.
_SYSTEM_STAGE = """\
# apt-packages: {packages} (downloaded on the host, installed here by dpkg).
FROM {base_image} AS {stage}
COPY {apt}/ /tmp/daskbox/{apt}/
RUN touch /tmp/daskbox/before-dpkg \\
 && dpkg --install --recursive /tmp/daskbox/{apt} \\
 && mkdir {root} && cd / \\
 && find . -xdev -mindepth 1 \\( -path ./tmp -o -path ./proc -o -path ./sys -o -path ./dev \\
      -o -path ./var/log -o -path ./var/cache -o -path ./etc/hosts -o -path ./etc/hostname \\
      -o -path ./etc/resolv.conf \\) -prune -o -cnewer /tmp/daskbox/before-dpkg -print \\
    | tar --create --no-recursion --files-from - | tar --extract --directory {root}

"""


def render(plan: DockerfilePlan) -> str:
    """Return the Dockerfile for ``plan`` (pure)."""
    project_copy = system_stage = system_copy = ""
    if plan.apt_packages:
        system_stage = _SYSTEM_STAGE.format(
            base_image=plan.base_image,
            packages=" ".join(plan.apt_packages),
            stage=SYSTEM_STAGE,
            apt=APT_DIR,
            root=SYSTEM_ROOT,
        )
        # Before useradd: a package's maintainer script may have written /etc/passwd.
        system_copy = f"COPY --from={SYSTEM_STAGE} {SYSTEM_ROOT}/ /\n"
    if plan.has_project_layer:
        # Installed on the host (daskbox.images.wheels.install_overlay): no RUN step, so a
        # code change costs one small COPY layer.
        project_copy = f"COPY {PROJECT_DIR}/ {VENV}/\n"
    labels = " \\\n      ".join(f"{key}={json.dumps(value)}" for key, value in plan.labels)
    return _TEMPLATE.format(
        version=__version__,
        base_image=plan.base_image,
        requirements=REQUIREMENTS_FILE,
        wheels=WHEELS_DIR,
        sdists=SDISTS_DIR,
        build_wheels=BUILD_WHEELS_DIR,
        venv=VENV,
        pip=_PIP,
        project_copy=project_copy,
        system_stage=system_stage,
        system_copy=system_copy,
        uid=IMAGE_UID,
        user=IMAGE_USER,
        lock_hash_env=ENV_LOCK_HASH,
        groups_env=ENV_GROUPS,
        image_tag_env=ENV_IMAGE_TAG,
        entrypoint=ENTRYPOINT_DIR,
        entrypoint_root=ENTRYPOINT_ROOT,
        ports=" ".join(str(port) for port in PORTS),
        tag_arg=IMAGE_TAG_ARG,
        revision_arg=REVISION_ARG,
        lock_hash=plan.lock_hash,
        groups=",".join(plan.groups),
        labels=labels,
        entrypoint_argv=json.dumps([f"{VENV}/bin/python", "-m", ENTRYPOINT_MODULE]),
    )
