"""End to end on the local target: build + push the quickstart image, launch it locally,
connect with the environment check from the quickstart's own environment, run the demo,
tear down. The README's one command does the same steps (the coordinator's test runs it).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from daskbox.gcloud.local import container_state
from daskbox.images import plan_image
from daskbox.images.environment import Platform
from daskbox.images.lock import export_environment
from daskbox_services import free_port

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.timeout(1200)]

REPO_ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = REPO_ROOT / "examples" / "quickstart"
DASKBOX_CLI = Path(sys.executable).parent / "daskbox"


@pytest.fixture(scope="module")
def quickstart_venv(tmp_path_factory) -> Path:
    """What `poetry install` makes in the quickstart: main + dev groups, the project editable."""
    root = tmp_path_factory.mktemp("quickstart-venv")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    exported = export_environment(QUICKSTART, Platform.local(), ("main", "dev"))
    requirements = root / "requirements.txt"
    requirements.write_text(exported.requirements_txt(), encoding="utf-8")
    pip = [str(python), "-m", "pip", "install", "--quiet", "--no-deps",
           "--disable-pip-version-check"]
    subprocess.run([*pip, "--require-hashes", "-r", str(requirements)], check=True)
    # The path dependencies (daskbox, in develop mode) and the project itself, as Poetry does.
    subprocess.run(
        [*pip, "-e", str(REPO_ROOT), "-e", str(QUICKSTART)], check=True
    )
    return venv


def daskbox(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(DASKBOX_CLI), *args], cwd=QUICKSTART, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"daskbox {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def test_quickstart_on_the_local_target(
    registry, registry_login, base_image, quickstart_venv, docker_client
):
    repository = f"{registry.host}/client-e2e-quickstart"
    instance = f"client-e2e-{free_port()}"
    connection_file = QUICKSTART / ".daskbox" / f"{instance}.json"
    try:
        daskbox("build", "--repository", repository)
        daskbox("push", "--repository", repository)
        reference = plan_image(QUICKSTART, {"repository": repository}).reference
        daskbox(
            "launch", "--local", "--image", reference, "--instance", instance,
            "--workers", "2", "--threads-per-worker", "1",
            "--scheduler-port", str(free_port()), "--dashboard-port", str(free_port()),
        )
        assert connection_file.is_file()
        demo = subprocess.run(
            [str(quickstart_venv / "bin" / "python"), "-m", "daskbox.demo", str(QUICKSTART),
             "--connection", str(connection_file)],
            capture_output=True, text=True, check=False,
        )
        assert demo.returncode == 0, demo.stdout + demo.stderr
        lines = demo.stdout.splitlines()
        assert lines[0].startswith("environment check: ")
        assert "(groups: main); local-only: " in lines[0]
        assert "daskbox" in lines[0]
        assert lines[1].startswith("grid search of 100 penalties: best alpha ")
        assert "on the cluster (2 workers)" in demo.stdout
        print(demo.stdout)

        check = subprocess.run(
            [str(quickstart_venv / "bin" / "daskbox"), "check", "--instance", instance],
            cwd=QUICKSTART, capture_output=True, text=True, check=False,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        assert check.stdout.startswith("environment check: ")

        # The test process's own environment (daskbox's lock, no quickstart) is not the image's.
        mismatch = subprocess.run(
            [str(DASKBOX_CLI), "check", "--instance", instance],
            cwd=QUICKSTART, capture_output=True, text=True, check=False,
        )
        assert mismatch.returncode == 1
        assert mismatch.stderr.startswith("error: ")
        assert "quickstart" in mismatch.stderr and "(missing)" in mismatch.stderr
    finally:
        subprocess.run(
            [str(DASKBOX_CLI), "teardown", "--local", "--instance", instance],
            cwd=QUICKSTART, capture_output=True, check=False,
        )
        # Every tag the build made in this test's repository, whatever the plan says now.
        for image in docker_client.images.list(name=repository):
            docker_client.images.remove(image.id, force=True)
    assert container_state(instance) is None
    assert not connection_file.exists()
