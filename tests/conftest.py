"""Session-wide real services: the Docker engine, the stand-in base image, a registry.

The engine itself is started by scripts/setup.sh (it needs root and outlives the tests);
everything else is started here and stopped when the session ends.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from hypothesis import HealthCheck, settings

from daskbox_services import Registry, docker_login, push_platform_index, running_registry
from pipeline_image import PipelineImage, build_fixture_image

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASE_IMAGE = f"python:{platform.python_version()}-slim-bookworm"

# daskbox runs the user's `poetry` CLI: the one installed next to this interpreter (the dev
# group), also when pytest was started without activating the virtualenv.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"

# Property tests (Hypothesis): the same examples on every run and machine (derandomized, no
# example database), and a deadline for a loaded 2-core machine rather than a laptop's 200 ms.
settings.register_profile(
    "daskbox",
    derandomize=True,
    database=None,
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow],
)
# A longer search for new escapes, same determinism: DASKBOX_HYPOTHESIS=long.
settings.register_profile("long", parent=settings.get_profile("daskbox"), max_examples=3000)
settings.load_profile(os.environ.get("DASKBOX_HYPOTHESIS", "daskbox"))

# A suite started in the background (`cmd &` in a script, as scripts/test.sh does) inherits
# an ignored SIGINT, and so would every program it starts: the Ctrl-C tests need SIGINT to
# reach them as it does from a terminal. A handler (unlike "ignore") is reset by exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    """The local Docker engine; fails (never skips) when it is not running."""
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as error:
        pytest.fail(f"no Docker engine ({error}): run `bash scripts/setup.sh` first")
    return client


@pytest.fixture(scope="session")
def base_image(docker_client: docker.DockerClient) -> str:
    """The default base image name, built locally as a stand-in when missing."""
    subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "scripts" / "standin_base_image.py"),
            "--tag",
            DEFAULT_BASE_IMAGE,
        ],
        check=True,
    )
    return DEFAULT_BASE_IMAGE


def _standin_script():  # the script's own naming of the stand-ins
    spec = importlib.util.spec_from_file_location(
        "standin_base_image", REPO_ROOT / "scripts" / "standin_base_image.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def arm64_base(docker_client: docker.DockerClient) -> str:
    """A linux/arm64 stand-in base (Debian's python3 under /usr/local/bin), built when
    missing; it runs here only under QEMU emulation (scripts/setup.sh enables it)."""
    subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "scripts" / "standin_base_image.py"),
            "--platform",
            "linux/arm64",
        ],
        check=True,
    )
    return str(_standin_script().default_tag("linux/arm64"))


@pytest.fixture(scope="session")
def platform_index_base(
    registry: Registry, registry_login: Path, base_image: str, arm64_base: str
) -> str:
    """The two stand-ins pushed to the session registry under one multi-platform tag, as the
    official python images are published: ``<registry>/python:<local x.y.z>-slim-bookworm``."""
    name = DEFAULT_BASE_IMAGE
    push_platform_index(
        registry, name, {"linux/amd64": base_image, "linux/arm64": arm64_base}, docker.from_env()
    )
    return f"{registry.host}/{name}"


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A real registry on loopback that requires htpasswd credentials."""
    with running_registry(
        tmp_path_factory.mktemp("registry"), "daskbox", "correct-horse"
    ) as running:
        yield running


@pytest.fixture(scope="session")
def registry_login(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Log in to ``registry`` in a private DOCKER_CONFIG, exported for the whole session."""
    config = tmp_path_factory.mktemp("docker-config")
    docker_login(registry, config)
    previous = os.environ.get("DOCKER_CONFIG")
    os.environ["DOCKER_CONFIG"] = str(config)
    yield config
    if previous is None:
        os.environ.pop("DOCKER_CONFIG", None)
    else:
        os.environ["DOCKER_CONFIG"] = previous


@pytest.fixture(scope="session")
def fixture_image(base_image: str, tmp_path_factory: pytest.TempPathFactory) -> PipelineImage:
    """A fixture project's image, built by daskbox's pipeline (kept: its tag is its content)."""
    return build_fixture_image(tmp_path_factory.mktemp("fixture-image"), "daskbox-test/cluster")
