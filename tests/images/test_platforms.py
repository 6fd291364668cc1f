"""Target platforms, reproducible layers and images that work, on real builds.

The arm64 image is built on this x86_64 machine from layers prepared on the host, with the
base pulled from the session registry by the digest of its arm64 manifest; it then runs a Dask
task under QEMU emulation (scripts/setup.sh enables binfmt_misc).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid

import docker
import pytest

from daskbox.contract import LABEL_PLATFORM
from daskbox.errors import ImageBuildError
from daskbox.images.engine import DockerEngine
from daskbox.images.pipeline import build_image, plan_image, push_image
from daskbox.record import read_record
from daskbox_services import free_port

from .conftest import copy_project, registry_get, remove_repository_images

pytestmark = [pytest.mark.docker, pytest.mark.slow]
INDEX = "application/vnd.docker.distribution.manifest.list.v2+json"


def quiet(_: str) -> None:
    pass


def step_images(lines: list[str]) -> list[str]:
    return [
        line.split()[-1]
        for line in lines
        if line.startswith(" ---> ") and len(line.split()[-1]) == 12
    ]


def assert_no_dangling_images_from(lines: list[str], client: docker.DockerClient) -> None:
    """Every image a build's steps made is gone, tagged, or under a tagged image."""
    listed = client.images.list(filters={"dangling": True})
    dangling = {image.id.split(":")[1][:12] for image in listed}
    assert not dangling & set(step_images(lines))


def run_dask_task(reference: str, platform: str) -> str:
    """Start the image's entrypoint (scheduler + workers) and run one task through a client in
    a second container of the same image; return what the task saw as its machine."""
    scheduler, dashboard = free_port(), free_port()
    name = f"images-platform-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        [
            "docker",
            "run",
            "--detach",
            "--name",
            name,
            "--platform",
            platform,
            "--network",
            "host",
            "-e",
            f"DASKBOX_SCHEDULER_PORT={scheduler}",
            "-e",
            f"DASKBOX_DASHBOARD_PORT={dashboard}",
            "-e",
            "DASKBOX_WORKERS=1",
            reference,
        ],
        check=True,
        capture_output=True,
    )
    client_script = (
        "import platform; from distributed import Client\n"
        f"with Client('tcp://127.0.0.1:{scheduler}', timeout=240) as client:\n"
        "    client.wait_for_workers(1, timeout=240)\n"
        "    print(client.submit(platform.machine, pure=False).result(timeout=240))\n"
    )
    try:
        done = subprocess.run(
            [
                "docker",
                "run",
                "--rm",
                "--platform",
                platform,
                "--network",
                "host",
                "--entrypoint",
                "/opt/venv/bin/python",
                reference,
                "-c",
                client_script,
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True).stdout
        assert done.returncode == 0, done.stderr + logs
        return done.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True)


def test_arm64_quickstart_builds_without_emulation_and_runs_a_task_under_it(
    tmp_path, registry, registry_login, platform_index_base, docker_client
):
    repository = f"{registry.host}/images-arm64-{uuid.uuid4().hex[:8]}"
    project = copy_project("quickstart", tmp_path, repository)
    plan = plan_image(project, {"base-image": platform_index_base, "platform": "linux/arm64"})
    # The base is pulled by the digest of its arm64 manifest, not by the index's digest.
    name = platform_index_base.split("/", 1)[1].partition(":")
    index = json.loads(registry_get(registry, f"/v2/{name[0]}/manifests/{name[2]}", INDEX))
    (arm64,) = [m["digest"] for m in index["manifests"] if m["platform"]["architecture"] == "arm64"]
    assert plan.base.digest == arm64
    assert plan.base.from_reference == f"{platform_index_base.rsplit(':', 1)[0]}@{arm64}"
    assert plan.dockerfile.startswith("# Rendered by daskbox") and "\nRUN " not in plan.dockerfile
    lines: list[str] = []
    try:
        build_image(plan, DockerEngine(), lines.append)
        attributes = docker_client.api.inspect_image(plan.reference)
        assert (attributes["Os"], attributes["Architecture"]) == ("linux", "arm64")
        assert attributes["Config"]["Labels"][LABEL_PLATFORM] == "linux/arm64"
        assert attributes["Config"]["Labels"]["org.opencontainers.image.base.digest"] == arm64
        record = read_record(project, "linux/arm64")
        assert (record.platform, record.target_environment["platform_machine"]) == (
            "linux/arm64",
            "aarch64",
        )
        assert plan.environment.target.python_version == plan.base.python_version
        assert_no_dangling_images_from(lines, docker_client)
        assert run_dask_task(plan.reference, "linux/arm64") == "aarch64"
    finally:
        remove_repository_images(docker_client, repository)


def test_same_inputs_give_the_same_layers_and_a_forced_rebuild_uploads_nothing(
    tmp_path, registry, registry_login, base_image, docker_client
):
    repository = f"{registry.host}/images-repro-{uuid.uuid4().hex[:8]}"
    project = copy_project("package_mode", tmp_path, repository)
    plan = plan_image(project)
    try:
        build_image(plan, DockerEngine(), quiet)
        first = docker_client.api.inspect_image(plan.reference)["RootFS"]["Layers"]
        # (Another test may have pushed the same layers already: the registry dedupes them.)
        push_image(plan, DockerEngine(), quiet)
        build_image(plan, DockerEngine(), quiet, force=True)  # no layer cache at all
        again = docker_client.api.inspect_image(plan.reference)["RootFS"]["Layers"]
        assert again == first
        pushed = push_image(plan, DockerEngine(), quiet)
        assert (pushed.layers_pushed, pushed.bytes_uploaded) == (0, 0)
        # Adding an apt package uploads its layer only: the venv, entrypoint and project
        # layers are the same bytes on a new parent, so the registry has them.
        pyproject = project / "pyproject.toml"
        text = pyproject.read_text()
        pyproject.write_text(
            text.replace("[tool.daskbox]\n", '[tool.daskbox]\napt-packages = ["jq"]\n')
        )
        with_jq = plan_image(project)
        lines: list[str] = []
        build_image(with_jq, DockerEngine(), lines.append)
        layers = docker_client.api.inspect_image(with_jq.reference)["RootFS"]["Layers"]
        assert len(layers) == len(first) + 1 and set(first) < set(layers)
        added = push_image(with_jq, DockerEngine(), quiet)
        assert added.layers_pushed == 1
        assert_no_dangling_images_from(lines, docker_client)
    finally:
        remove_repository_images(docker_client, repository)
        remove_repository_images(docker_client, "daskbox-stages/fixture-app")


def test_a_library_the_image_lacks_fails_the_build_with_its_package(
    tmp_path, base_image, docker_client
):
    """omp-ext links libgomp.so.1, which python:*-slim does not have (as lightgbm's wheels)."""
    repository = f"localhost:5000/images-omp-{uuid.uuid4().hex[:8]}"
    project = copy_project("needs_libgomp/app", tmp_path, repository)
    plan = plan_image(project)
    with pytest.raises(ImageBuildError) as failed:
        build_image(plan, DockerEngine(), quiet)
    assert str(failed.value).startswith(
        "the linux/amd64 image cannot load 1 shared library: libgomp.so.1 (needed by "
        "/opt/venv/lib/python"
    )
    assert str(failed.value).endswith(
        'add "libgomp1" to [tool.daskbox] apt-packages, or if the image does load them, set '
        '[tool.daskbox] ignore-missing-libraries = ["libgomp.so.1"]'
    )
    assert docker_client.images.list(name=repository) == []
    text = (project / "pyproject.toml").read_text()
    try:
        # The way past a wrong verdict: the check then lets the build through.
        (project / "pyproject.toml").write_text(
            text + 'ignore-missing-libraries = ["libgomp.so.1"]\n'
        )
        assert build_image(plan_image(project), DockerEngine(), quiet).built
        (project / "pyproject.toml").write_text(text + 'apt-packages = ["libgomp1"]\n')
        fixed = plan_image(project)
        build_image(fixed, DockerEngine(), quiet)
        threads = subprocess.run(
            [
                "docker",
                "run",
                "--rm",
                "--network",
                "none",
                "--entrypoint",
                "/opt/venv/bin/python",
                fixed.reference,
                "-c",
                "import omp_ext; print(omp_ext.max_threads())",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert int(threads) >= 1
    finally:
        remove_repository_images(docker_client, repository)
        remove_repository_images(docker_client, "daskbox-stages/fixture-omp-app")


def test_an_sdist_with_c_code_is_compiled_in_the_sdists_stage(tmp_path, base_image, docker_client):
    repository = f"localhost:5000/images-sdist-c-{uuid.uuid4().hex[:8]}"
    project = copy_project("sdist_c", tmp_path, repository)
    plan = plan_image(project)
    lines: list[str] = []
    try:
        build_image(plan, DockerEngine(), lines.append)
        out = subprocess.run(
            [
                "docker",
                "run",
                "--rm",
                "--network",
                "none",
                "--entrypoint",
                "sh",
                plan.reference,
                "-c",
                "python -c 'import netifaces; print(netifaces.interfaces())'; "
                "command -v gcc cc || echo no-compiler",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "'lo'" in out and "no-compiler" in out  # the compilers stayed in the stage
        assert_no_dangling_images_from(lines, docker_client)
        stage = docker_client.images.get("daskbox-stages/fixture-sdist-c:sdists-linux-amd64")
        assert stage.id  # kept, tagged, as the next build's cache
    finally:
        remove_repository_images(docker_client, repository)
        remove_repository_images(docker_client, "daskbox-stages/fixture-sdist-c")


def test_a_failed_sdist_build_names_the_package_and_what_was_missing(tmp_path):
    """The diagnosis reads a real compiler's output: gcc on a file including a header no
    package here provides."""
    from daskbox.images.engine import BuildStepFailed
    from daskbox.images.pipeline import _diagnose

    source = tmp_path / "ext.c"
    source.write_text("#include <libpq-fe.h>\nint main(void) { return 0; }\n")
    compiler = subprocess.run(
        ["gcc", "-c", str(source), "-o", str(tmp_path / "ext.o")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert compiler.returncode != 0
    output = [
        "Step 3/9 : RUN set -e; ...",
        "daskbox-building: psycopg2",
        *compiler.stderr.splitlines(),
        "error: command '/usr/bin/gcc' failed",
    ]
    plan = type("Plan", (), {"platform": "linux/arm64"})()
    message = str(_diagnose(plan, BuildStepFailed("The command returned 1", output)))
    assert message == (
        "building the sdist of psycopg2 for linux/arm64 failed: the header libpq-fe.h is "
        "missing: add the Debian -dev package that provides it to [tool.daskbox] "
        "build-apt-packages (`apt-file search libpq-fe.h`)"
    )


def test_host_path_is_not_in_the_layers(tmp_path, base_image):
    """The venv layer's bytecode names image paths, not the host folder it was made in."""
    import tarfile

    from daskbox.images.pipeline import prepare_layers
    from daskbox.images.wheels import fetch_index_distributions

    plan = plan_image(copy_project("non_package", tmp_path))
    layers = prepare_layers(plan, fetch_index_distributions(plan.environment, quiet))
    with tarfile.open(layers.venv.path) as archive:
        pycs = [m for m in archive if m.name.endswith(".pyc")]
        assert pycs
        data = b"".join(archive.extractfile(m).read() for m in pycs[:50])  # type: ignore
    assert b"/opt/venv/lib/python" in data and b"/daskbox-venv" not in data


def test_each_platform_keeps_its_own_latest_locally_and_in_the_registry(
    tmp_path, registry, registry_login, platform_index_base, docker_client
):
    """`latest` names the linux/amd64 image; an arm64 build moves `latest-linux-arm64`."""
    repository = f"{registry.host}/images-latest-{uuid.uuid4().hex[:8]}"
    project = copy_project("non_package", tmp_path, repository)
    name = repository.split("/", 1)[1]
    manifest = "application/vnd.docker.distribution.manifest.v2+json"

    def registry_digest(tag: str) -> str:
        body = registry_get(registry, f"/v2/{name}/manifests/{tag}", manifest)
        return "sha256:" + hashlib.sha256(body).hexdigest()

    try:
        images, pushed = {}, {}
        for platform in ("linux/amd64", "linux/arm64"):
            plan = plan_image(project, {"base-image": platform_index_base, "platform": platform})
            images[platform] = build_image(plan, DockerEngine(), quiet).image_id
            pushed[platform] = push_image(plan, DockerEngine(), quiet).reference.digest
        assert docker_client.images.get(f"{repository}:latest").id == images["linux/amd64"]
        arm64 = docker_client.images.get(f"{repository}:latest-linux-arm64")
        assert arm64.id == images["linux/arm64"]
        assert registry_digest("latest") == pushed["linux/amd64"]
        assert registry_digest("latest-linux-arm64") == pushed["linux/arm64"]
        # Building amd64 again (a no-op) leaves the arm64 tag where it is.
        plan = plan_image(project, {"base-image": platform_index_base})
        assert not build_image(plan, DockerEngine(), quiet).built
        assert docker_client.images.get(f"{repository}:latest-linux-arm64").id == arm64.id
    finally:
        remove_repository_images(docker_client, repository)
