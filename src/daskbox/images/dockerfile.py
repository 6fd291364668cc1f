"""DockerfilePlan -> Dockerfile text: one template, classic-builder syntax (no BuildKit).

The runtime image is the base plus layers prepared on the host (``ADD <layer>.tar /``: no step
runs inside the image, so a wheel-only lock builds for a foreign platform without emulation),
ordered from the least to the most often changed: the non-root user (follows the base), the
system packages (apt-packages, installed by dpkg in a stage of their own so only their files
reach the image), the locked wheels' venv, the locked sdists built in a builder stage of the
target platform (with build-essential; usually absent), daskbox's entrypoint, then the
project's own wheels (the only layer a code change touches). Metadata comes last: it adds
no filesystem layer and does not bust the cache above."""

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
    IMAGE_USER,
    VENV,
)

PORTS = (DEFAULT_SCHEDULER_PORT, DEFAULT_DASHBOARD_PORT)

# Paths inside the build context.
LAYERS_DIR = "layers"  # the prepared layer tars
USER_LAYER = f"{LAYERS_DIR}/user.tar"
VENV_LAYER = f"{LAYERS_DIR}/venv.tar"
ENTRYPOINT_LAYER = f"{LAYERS_DIR}/entrypoint.tar"
PROJECT_LAYER = f"{LAYERS_DIR}/project.tar"
APT_DIR = "apt"  # .debs for [tool.daskbox] apt-packages, downloaded on the host
BUILD_DIR = "build"  # what the sdists stage needs: .debs, pip, build requirements, sdists
BUILD_DEBS = f"{BUILD_DIR}/debs"
BUILD_PIP = f"{BUILD_DIR}/pip"  # pip's own wheel: the base image need not have pip
BUILD_WHEELS = f"{BUILD_DIR}/wheels"  # the sdists' build requirements, as target wheels
BUILD_REQUIREMENTS = f"{BUILD_DIR}/build-requirements.txt"  # pinned by hash
SDISTS_DIR = f"{BUILD_DIR}/sdists"
SYSTEM_STAGE = "system-packages"
SDIST_STAGE = "sdists"
# In the system-packages stage: every file dpkg created or changed, laid out from /.
SYSTEM_ROOT = "/tmp/daskbox/root"
ENTRYPOINT_DIR = "daskbox"  # the entrypoint's files, relative to ENTRYPOINT_ROOT
# Printed before each sdist's build, so a failure can be pinned on its package.
BUILDING_MARKER = "daskbox-building:"

# Values that differ per build without changing the image's content come in as build args,
# so the Dockerfile (part of the content tag) stays the same.
IMAGE_TAG_ARG = "DASKBOX_IMAGE_TAG"
REVISION_ARG = "DASKBOX_REVISION"


@dataclass(frozen=True)
class DockerfilePlan:
    """Everything the template needs; assert on this, the template only does layout."""

    base_image: str  # what FROM names (a local name, or name@sha256:<platform manifest>)
    platform: str  # linux/amd64 or linux/arm64
    interpreter: str  # the base image's python3.X, which builds the sdists
    lock_hash: str
    groups: tuple[str, ...]
    has_project_layer: bool = False  # the project (or its path/git dependencies) is installed
    apt_packages: tuple[str, ...] = ()  # installed from .debs in the context
    sdists: tuple[tuple[str, str], ...] = ()  # (name, sdist file name) built in the image
    build_apt_packages: tuple[str, ...] = ()  # besides build-essential, for the sdists only
    pip_wheel: str = ""  # file name of pip's wheel, when there are sdists
    labels: tuple[tuple[str, str], ...] = ()


_TEMPLATE = """\
# Rendered by daskbox {version} for {platform}. Built with `docker build --network none` by the
# classic builder: every file is in the context, fetched on the host and checked against
# poetry.lock; every runtime layer was prepared on the host (no step runs in the image).

{sdist_stage}{system_stage}FROM {base_image}
ADD {user_layer} /
{system_copy}ADD {venv_layer} /
{sdist_copy}ADD {entrypoint_layer} /
{project_add}USER {user}
WORKDIR /home/{user}
EXPOSE {ports}
ENTRYPOINT {entrypoint_argv}
ARG {tag_arg}=unknown {revision_arg}=unknown
ENV PATH={venv}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PYTHONPATH={entrypoint_root} \\
    PYTHONUNBUFFERED=1 \\
    {lock_hash_env}={lock_hash} \\
    {groups_env}={groups} \\
    {image_tag_env}=${tag_arg}
LABEL {labels} \\
      org.opencontainers.image.revision=${revision_arg}
"""


# dpkg runs in a stage of its own and only what it created or changed (ctime after a marker:
# dpkg keeps the archives' mtimes, but ctime is always "now") moves on to the runtime stage,
# with fixed mtimes, so no .deb is left in any layer and the layer is the same every time.
_SYSTEM_STAGE = """\
# apt-packages: {packages} (downloaded on the host, installed here by dpkg; this stage runs
# {platform} binaries, under emulation when the host is another platform).
FROM {base_image} AS {stage}
ADD {user_layer} /
COPY {apt}/ /tmp/daskbox/{apt}/
RUN touch /tmp/daskbox/before-dpkg \\
 && dpkg --install --recursive /tmp/daskbox/{apt} \\
 && mkdir {root} && cd / \\
 && find . -xdev -mindepth 1 \\( -path ./tmp -o -path ./proc -o -path ./sys -o -path ./dev \\
      -o -path ./var/log -o -path ./var/cache -o -path ./etc/hosts -o -path ./etc/hostname \\
      -o -path ./etc/resolv.conf \\) -prune -o -cnewer /tmp/daskbox/before-dpkg -print \\
    | tar --create --no-recursion --files-from - | tar --extract --directory {root} \\
 && find {root} -exec touch --no-dereference --date=@0 {{}} +

"""

# Locked distributions without a wheel for the target: built from their hash-checked sdists
# in the target platform (emulated on another host), with build-essential and the pinned
# build requirements, all from the context. Each builds in a fixed folder with
# SOURCE_DATE_EPOCH set, so the layer holding the results is the same every time.
_SDIST_STAGE = """\
# Locked sdists: {names}. Built in {platform} with build-essential{extra_packages}
# (under emulation when the host is another platform).
FROM {base_image} AS {stage}
COPY {build}/ /tmp/daskbox/{build}/
RUN set -e; cd /tmp/daskbox/{build}; dpkg --install --recursive {debs} > /dev/null; \\
    {python} -m venv --without-pip /tmp/daskbox/env; \\
    pip() {{ /tmp/daskbox/env/bin/python {pip}/{pip_wheel}/pip --isolated \\
      --disable-pip-version-check --no-input "$@"; }}; \\
    pip install --no-index --no-deps --require-hashes --find-links {wheels} \\
      --requirement {requirements} > /dev/null; \\
    export SOURCE_DATE_EPOCH=0; \\
    build() {{ mkdir -p /tmp/daskbox/src/$1; \\
      tar --extract --file {sdists}/$2 --directory /tmp/daskbox/src/$1 --strip-components 1; \\
      echo "{marker} $1"; \\
      pip wheel --no-index --no-deps --no-build-isolation --wheel-dir /tmp/daskbox/built \\
        /tmp/daskbox/src/$1; }}; \\
{builds}    {python} -m venv --without-pip {venv}; \\
    pip --python {venv}/bin/python install --no-index --no-deps --no-compile \\
      /tmp/daskbox/built/*.whl; \\
    rm -rf {venv}/pyvenv.cfg {venv}/lib64 {venv}/bin/python*; rmdir {venv}/include || true; \\
    PYTHONHASHSEED=0 {python} -m compileall -q --invalidation-mode unchecked-hash {venv}/lib; \\
    find {venv} -exec touch --no-dereference --date=@0 {{}} +

"""


def render(plan: DockerfilePlan) -> str:
    """Return the Dockerfile for ``plan`` (pure)."""
    system_stage = system_copy = sdist_stage = sdist_copy = project_add = ""
    if plan.apt_packages:
        system_stage = _SYSTEM_STAGE.format(
            base_image=plan.base_image,
            platform=plan.platform,
            packages=" ".join(plan.apt_packages),
            stage=SYSTEM_STAGE,
            user_layer=USER_LAYER,
            apt=APT_DIR,
            root=SYSTEM_ROOT,
        )
        system_copy = f"COPY --from={SYSTEM_STAGE} {SYSTEM_ROOT}/ /\n"
    if plan.sdists:
        extra = "".join(f", {name}" for name in plan.build_apt_packages)
        sdist_stage = _SDIST_STAGE.format(
            names=", ".join(name for name, _ in plan.sdists),
            platform=plan.platform,
            extra_packages=extra,
            base_image=plan.base_image,
            stage=SDIST_STAGE,
            build=BUILD_DIR,
            debs=BUILD_DEBS.removeprefix(f"{BUILD_DIR}/"),
            python=plan.interpreter,
            pip=BUILD_PIP.removeprefix(f"{BUILD_DIR}/"),
            pip_wheel=plan.pip_wheel,
            wheels=BUILD_WHEELS.removeprefix(f"{BUILD_DIR}/"),
            requirements=BUILD_REQUIREMENTS.removeprefix(f"{BUILD_DIR}/"),
            sdists=SDISTS_DIR.removeprefix(f"{BUILD_DIR}/"),
            marker=BUILDING_MARKER,
            builds="".join(f"    build {name} {filename}; \\\n" for name, filename in plan.sdists),
            venv=VENV,
        )
        sdist_copy = f"COPY --from={SDIST_STAGE} {VENV}/ {VENV}/\n"
    if plan.has_project_layer:
        project_add = f"ADD {PROJECT_LAYER} /\n"
    labels = " \\\n      ".join(f"{key}={json.dumps(value)}" for key, value in plan.labels)
    return _TEMPLATE.format(
        version=__version__,
        platform=plan.platform,
        base_image=plan.base_image,
        sdist_stage=sdist_stage,
        system_stage=system_stage,
        user_layer=USER_LAYER,
        system_copy=system_copy,
        venv_layer=VENV_LAYER,
        sdist_copy=sdist_copy,
        entrypoint_layer=ENTRYPOINT_LAYER,
        project_add=project_add,
        venv=VENV,
        user=IMAGE_USER,
        lock_hash_env=ENV_LOCK_HASH,
        groups_env=ENV_GROUPS,
        image_tag_env=ENV_IMAGE_TAG,
        entrypoint_root=ENTRYPOINT_ROOT,
        ports=" ".join(str(port) for port in PORTS),
        tag_arg=IMAGE_TAG_ARG,
        revision_arg=REVISION_ARG,
        lock_hash=plan.lock_hash,
        groups=",".join(plan.groups),
        labels=labels,
        entrypoint_argv=json.dumps([f"{VENV}/bin/python", "-m", ENTRYPOINT_MODULE]),
    )
