"""The shared test services are real: the registry refuses bad credentials."""

from __future__ import annotations

import subprocess

import pytest

from daskbox_services import Registry

pytestmark = pytest.mark.docker


def test_registry_accepts_valid_and_refuses_bad_credentials(registry: Registry, tmp_path):
    good = subprocess.run(
        [
            "docker",
            "--config",
            str(tmp_path / "good"),
            "login",
            "-u",
            str(registry.username),
            "--password-stdin",
            registry.host,
        ],
        input=registry.password,
        text=True,
        capture_output=True,
    )
    bad = subprocess.run(
        [
            "docker",
            "--config",
            str(tmp_path / "bad"),
            "login",
            "-u",
            str(registry.username),
            "--password-stdin",
            registry.host,
        ],
        input="wrong",
        text=True,
        capture_output=True,
    )
    assert good.returncode == 0, good.stderr
    assert bad.returncode != 0
    assert "401" in bad.stderr or "unauthorized" in bad.stderr.lower()


def test_base_image_has_the_local_python(docker_client, base_image):
    import platform

    output = docker_client.containers.run(
        base_image,
        ["python", "-c", "import platform; print(platform.python_version())"],
        remove=True,
        network_mode="host",
    )
    assert output.decode().strip() == platform.python_version()
