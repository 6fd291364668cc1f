"""launch without --image: the image record that `invoke build push` handed over.

A VM launch reads the record and nothing else of the image: it works with the Docker engine
out of reach and with Poetry not importable, and it refuses a record of another lock.
"""

from __future__ import annotations

import hashlib
import operator
import shutil
import uuid

import docker
import pytest
from distributed import Client

from conftest import REPO_ROOT, daskbox
from daskbox._pyproject import parse_toml
from daskbox.client.connection import connection_path, read_connection_file
from daskbox.contract import DEFAULT_PLATFORM
from daskbox.record import ImageRecord, read_record, write_record
from daskbox_services import free_port

pytestmark = [pytest.mark.docker, pytest.mark.slow]

FIXTURE = REPO_ROOT / "tests" / "fixtures" / "projects" / "non_package"
LAUNCH = ("launch", "--source-range", "203.0.113.7/32")


@pytest.fixture
def user_project(tmp_path, open_registry):
    """A fixture project pushing to a registry the emulated VM pulls from without
    credentials (on 127.0.0.1, hence the explicit allow-private-registry)."""
    root = tmp_path / "user-project"
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns(".daskbox"))
    instance = f"daskbox-gcloud-images-{uuid.uuid4().hex[:6]}"
    repository = f"{open_registry.host}/daskbox-gcloud-{instance}"
    with (root / "pyproject.toml").open("a") as stream:
        stream.write(
            f'\n[tool.daskbox]\nrepository = "{repository}"\n'
            f'\n[tool.daskbox.gcloud]\ninstance = "{instance}"\n'
            f"scheduler-port = {free_port()}\ndashboard-port = {free_port()}\n"
            'idle-timeout = "0"\ntimeout = 120\nallow-private-registry = true\n'
        )
    yield root
    client = docker.from_env()
    for image in client.images.list(name=repository):
        client.images.remove(image.id, force=True)


def without_docker_and_poetry(env: dict[str, str], tmp_path) -> dict[str, str]:
    """``env`` with DOCKER_HOST pointing nowhere and a ``poetry`` package that cannot import
    (first on PYTHONPATH) and no ``poetry`` command on PATH."""
    blocker = tmp_path / "no-poetry"
    (blocker / "poetry").mkdir(parents=True, exist_ok=True)
    (blocker / "poetry" / "__init__.py").write_text("raise ImportError('poetry is blocked')\n")
    path = ":".join(
        part for part in env["PATH"].split(":") if not (part and shutil.which("poetry", path=part))
    )
    return {
        **env,
        "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock",
        "PYTHONPATH": str(blocker),
        "PATH": path,
    }


def test_launch_reads_the_record_with_no_docker_and_no_poetry(
    user_project, registry_login, base_image, emulator, gcloud_env, tmp_path
):
    refused = daskbox(user_project, gcloud_env, *LAUNCH, check=False)
    assert refused.returncode == 1
    assert f"no {DEFAULT_PLATFORM} image built for user-project" in refused.stderr
    assert refused.stderr.rstrip().endswith("run `invoke build push`")

    daskbox(user_project, gcloud_env, "build")
    record = read_record(user_project, DEFAULT_PLATFORM)
    assert record.pinned is None
    not_pushed = daskbox(user_project, gcloud_env, *LAUNCH, check=False)
    assert f"image {record.reference} is not in the registry: run `invoke build push`" in (
        not_pushed.stderr
    )

    daskbox(user_project, gcloud_env, "push")
    record = read_record(user_project, DEFAULT_PLATFORM)
    assert record.pinned is not None and record.pinned.startswith(record.repository + "@sha256:")
    isolated = without_docker_and_poetry(gcloud_env, tmp_path)
    dry_run = daskbox(user_project, isolated, *LAUNCH, "--dry-run")
    assert record.pinned in dry_run.stdout
    daskbox(user_project, isolated, *LAUNCH)
    try:
        instance = _instance(user_project)
        connection = read_connection_file(connection_path(user_project, instance))
        assert connection.image == record.pinned
        lock = (user_project / "poetry.lock").read_bytes()
        assert connection.lock_hash == hashlib.sha256(lock).hexdigest() == record.lock_hash
        assert connection.groups == ("main",)
        assert connection.record == record  # handed on to connect
        with Client(
            connection.scheduler_address, security=connection.tls.security(), timeout=30
        ) as client:
            assert client.submit(operator.add, 1, 2).result() == 3
    finally:
        daskbox(user_project, isolated, "teardown", check=False)
    assert emulator.instances == {} and emulator.containers() == []


def test_launch_refuses_a_record_of_another_lock(user_project, emulator, gcloud_env):
    other_lock = ImageRecord(
        reference="registry.invalid/app:0123",
        image_id="sha256:" + "1" * 64,
        platform=DEFAULT_PLATFORM,
        python_version="3.11.7",
        target_environment={},
        lock_hash="0" * 64,
        groups=("main",),
        extras=(),
        installed_digest="2" * 64,
        pinned="registry.invalid/app@sha256:" + "3" * 64,
    )
    write_record(user_project, other_lock)
    refused = daskbox(user_project, gcloud_env, *LAUNCH, check=False)
    assert refused.returncode == 1
    assert "was built from another poetry.lock" in refused.stderr
    assert refused.stderr.rstrip().endswith("run `invoke build push`")
    assert emulator.requests == []  # refused before any cloud call


def _instance(root) -> str:
    return parse_toml((root / "pyproject.toml").read_text())["tool"]["daskbox"]["gcloud"][
        "instance"
    ]
