"""launch without --image: the images component's content-tagged image of the project."""

from __future__ import annotations

import hashlib
import operator
import shutil
import uuid

import docker
import pytest
from distributed import Client

from conftest import REPO_ROOT, daskbox
from daskbox.client.connection import connection_path, read_connection_file
from daskbox.images import plan_image
from daskbox_services import free_port

pytestmark = [pytest.mark.docker, pytest.mark.slow]

FIXTURE = REPO_ROOT / "tests" / "fixtures" / "projects" / "non_package"


@pytest.fixture
def user_project(tmp_path, registry):
    root = tmp_path / "user-project"
    shutil.copytree(FIXTURE, root)
    instance = f"daskbox-gcloud-images-{uuid.uuid4().hex[:6]}"
    with (root / "pyproject.toml").open("a") as stream:
        stream.write(
            f'\n[tool.daskbox]\nrepository = "{registry.host}/daskbox-gcloud-{instance}"\n'
            f'\n[tool.daskbox.gcloud]\ninstance = "{instance}"\n'
            f"scheduler-port = {free_port()}\ndashboard-port = {free_port()}\n"
            'idle-timeout = "0"\ntimeout = 120\n'
        )
    yield root
    client = docker.from_env()
    reference = plan_image(root).reference
    for image in client.images.list(name=reference.rsplit(":", 1)[0]):
        client.images.remove(image.id, force=True)


def test_launch_runs_the_pushed_content_tagged_image(
    user_project, registry_login, base_image, emulator, gcloud_env
):
    launch = ("launch", "--source-range", "203.0.113.7/32")
    refused = daskbox(user_project, gcloud_env, *launch, check=False)
    assert refused.returncode == 1
    reference = plan_image(user_project).reference
    assert f"image {reference} is not in the registry: run `invoke build push`" in refused.stderr

    daskbox(user_project, gcloud_env, "build", "push")
    daskbox(user_project, gcloud_env, *launch)
    try:
        connection = read_connection_file(connection_path(user_project, _instance(user_project)))
        assert connection.image.startswith(reference.rsplit(":", 1)[0] + "@sha256:")
        lock = (user_project / "poetry.lock").read_bytes()
        assert connection.lock_hash == hashlib.sha256(lock).hexdigest()
        assert connection.groups == ("main",)
        with Client(
            connection.scheduler_address, security=connection.tls.security(), timeout=30
        ) as client:
            assert client.submit(operator.add, 1, 2).result() == 3
    finally:
        daskbox(user_project, gcloud_env, "teardown", check=False)
    assert emulator.instances == {} and emulator.containers() == []


def _instance(root) -> str:
    import tomllib

    return tomllib.loads((root / "pyproject.toml").read_text())["tool"]["daskbox"]["gcloud"][
        "instance"
    ]
