"""Real builds and pushes: Docker Engine, the registry fixture, the stand-in base image.

One cold build (package_mode fixture) is shared by every test in this module.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import docker
import pytest
from packaging.utils import canonicalize_name

import daskbox
from daskbox.errors import ConfigError, DockerfileError, ImageBuildError, PushError
from daskbox.images.engine import DockerEngine
from daskbox.images.pipeline import build_image, find_pushed, plan_image, push_image
from daskbox.images.wheels import fetch_index_distributions
from daskbox.record import read_record

from .conftest import (
    REPO_ROOT,
    copy_project,
    docker_config_dir,
    registry_get,
    remove_repository_images,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def _log(lines: list[str]):
    return lines.append


def git(project: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.fixture(scope="module")
def built(tmp_path_factory, registry, registry_login, base_image, docker_client):
    repository = f"{registry.host}/images-test-{uuid.uuid4().hex[:8]}"
    project = copy_project("package_mode", tmp_path_factory.mktemp("project"), repository)
    git(project, "init", "-q")
    git(project, "add", ".")
    git(project, "commit", "-q", "-m", "fixture")
    plan = plan_image(project)
    build_lines: list[str] = []
    result = build_image(plan, DockerEngine(), _log(build_lines))
    first_push = push_image(plan, DockerEngine(), lambda _: None)
    yield {
        "commit": git(project, "rev-parse", "HEAD"),
        "project": project,
        "plan": plan,
        "result": result,
        "push": first_push,
        "build_lines": build_lines,
    }
    remove_repository_images(docker_client, repository)


def run_in_image(reference: str, *command: str) -> str:
    return subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            command[0],
            reference,
            *command[1:],
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_installed_packages_equal_the_exported_set(built):
    plan = built["plan"]
    listed = json.loads(
        run_in_image(
            plan.reference,
            "/usr/local/bin/python",
            "-m",
            "pip",
            "--python",
            "/opt/venv/bin/python",
            "list",
            "--format=json",
        )
    )
    installed = {canonicalize_name(p["name"]): p["version"] for p in listed}
    expected = {str(r.name): r.version for r in plan.environment.requirements}
    expected["fixture-app"] = "0.1.0"
    assert installed == expected


def test_pip_check_passes_and_python_matches_local(built):
    reference = built["plan"].reference
    assert "No broken requirements" in run_in_image(
        reference, "/usr/local/bin/python", "-m", "pip", "--python", "/opt/venv/bin/python", "check"
    )
    version = run_in_image(
        reference, "/opt/venv/bin/python", "-c", "import platform; print(platform.python_version())"
    )
    assert version.strip() == platform.python_version()


def test_runtime_layout_user_entrypoint_and_env(built, docker_client):
    plan = built["plan"]
    attributes = docker_client.api.inspect_image(plan.reference)
    config = attributes["Config"]
    assert config["User"] == "daskbox"
    assert config["Entrypoint"] == ["/opt/venv/bin/python", "-m", "daskbox.entrypoint"]
    assert set(config["ExposedPorts"]) == {"8786/tcp", "8787/tcp"}
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["DASKBOX_LOCK_HASH"] == plan.lock_hash
    assert env["DASKBOX_GROUPS"] == "main"
    assert env["DASKBOX_IMAGE_TAG"] == plan.image.tag
    out = run_in_image(
        plan.reference,
        "/opt/venv/bin/python",
        "-c",
        "import daskbox.entrypoint, fixture_app, importlib.metadata as m;"
        "print(daskbox.entrypoint.__file__);"
        "print(sorted(d.metadata['Name'] for d in m.distributions()))",
    )
    entry_file, names = out.splitlines()
    assert entry_file == "/opt/daskbox/daskbox/entrypoint/__init__.py"
    assert "daskbox" not in names and "pip" not in names  # only the user's lock
    tools = run_in_image(
        plan.reference, "sh", "-c", "ls /opt/venv/bin; command -v gcc cc poetry || true"
    )
    assert "pip" not in tools.split() and "poetry" not in tools and "gcc" not in tools


def files_per_layer(reference: str) -> list[set[str]]:
    """The file names in each layer of ``reference``, base first (from `docker save`)."""
    saved = subprocess.Popen(["docker", "save", reference], stdout=subprocess.PIPE)
    layers: dict[str, set[str]] = {}
    manifest: list[dict[str, list[str]]] = []
    assert saved.stdout is not None
    with tarfile.open(fileobj=saved.stdout, mode="r|") as archive:
        for member in archive:
            stream = archive.extractfile(member) if member.isfile() else None
            if stream is None:
                continue
            if member.name.endswith("layer.tar"):
                with tarfile.open(fileobj=stream, mode="r|") as layer:
                    layers[member.name] = {entry.name for entry in layer}
            elif member.name == "manifest.json":
                manifest = json.loads(stream.read())
    assert saved.wait() == 0
    return [layers[name] for name in manifest[0]["Layers"]]


def test_entrypoint_is_copied_without_bytecode(built):
    """/opt/daskbox holds exactly daskbox/__init__.py, the contract module and the
    entrypoint's sources."""
    listed = run_in_image(built["plan"].reference, "find", "/opt/daskbox", "-type", "f").split()
    source = REPO_ROOT / "src" / "daskbox" / "entrypoint"
    expected = {
        f"/opt/daskbox/daskbox/entrypoint/{path.relative_to(source).as_posix()}"
        for path in source.rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert "/opt/daskbox/daskbox/entrypoint/idle.py" in expected  # the scheduler preload
    assert set(listed) == expected | {
        "/opt/daskbox/daskbox/__init__.py",
        "/opt/daskbox/daskbox/contract.py",
    }
    assert not [name for name in listed if "__pycache__" in name or name.endswith(".pyc")]
    preload = run_in_image(
        built["plan"].reference,
        "/opt/venv/bin/python",
        "-c",
        "import daskbox.entrypoint.idle as m; print(m.__file__)",
    )
    assert preload.strip() == "/opt/daskbox/daskbox/entrypoint/idle.py"


def test_installed_digest_label_matches_the_image_contents(built, docker_client):
    """dev.daskbox.installed-digest is recomputable from importlib.metadata in the image."""
    plan = built["plan"]
    label = docker_client.api.inspect_image(plan.reference)["Config"]["Labels"][
        "dev.daskbox.installed-digest"
    ]
    script = (
        "import hashlib, re, importlib.metadata as m;"
        "lines = sorted(re.sub(r'[-_.]+', '-', d.metadata['Name']).lower() + '==' + d.version"
        " + chr(10) for d in m.distributions());"
        "print(hashlib.sha256(''.join(lines).encode()).hexdigest())"
    )
    assert run_in_image(plan.reference, "/opt/venv/bin/python", "-c", script).strip() == label


def test_build_used_no_network(built, docker_client):
    # A wheel-only lock runs nothing in the image: every step copies a prepared layer ...
    steps = [line.split(" : ", 1)[1] for line in built["build_lines"] if line.startswith("Step ")]
    assert [step.split()[0] for step in steps if step.split()[0] in ("RUN", "ADD", "COPY")] == [
        "ADD"
    ] * 4
    # ... and the engine seam builds with no network at all: a step sees only loopback,
    # whereas the same step with host networking sees the host's interfaces.
    from daskbox.images.context import ContextFile, write_context

    def probe(nonce: str) -> bytes:  # a fresh step each time, so no cached layer answers
        return (
            f"FROM {built['plan'].settings.base_image}\n"
            f"RUN echo {nonce} && ls /sys/class/net > /interfaces\n"
        ).encode()

    tag = f"images-netprobe:{uuid.uuid4().hex[:8]}"
    with write_context({"Dockerfile": ContextFile(data=probe(uuid.uuid4().hex))}) as context:
        DockerEngine().build(context, tag, {}, lambda _: None)
    try:
        assert run_in_image(tag, "cat", "/interfaces").split() == ["lo"]
        with write_context({"Dockerfile": ContextFile(data=probe(uuid.uuid4().hex))}) as context:
            docker_client.images.build(
                fileobj=context,
                custom_context=True,
                tag=tag + "-host",
                network_mode="host",
                rm=True,
            )
        assert run_in_image(tag + "-host", "cat", "/interfaces").split() != ["lo"]
    finally:
        for name in (tag, tag + "-host"):
            with contextlib.suppress(docker.errors.ImageNotFound):
                docker_client.images.remove(name, force=True)


def test_registry_manifest_carries_the_labels(built, registry):
    plan = built["plan"]
    name = plan.image.repository.split("/", 1)[1]
    manifest = json.loads(
        registry_get(registry, f"/v2/{name}/manifests/{plan.image.tag}", MANIFEST)
    )
    config = json.loads(registry_get(registry, f"/v2/{name}/blobs/{manifest['config']['digest']}"))
    labels = config["config"]["Labels"]
    assert labels["dev.daskbox.lock-hash"] == plan.lock_hash
    assert labels["dev.daskbox.python-version"] == platform.python_version()
    assert labels["dev.daskbox.version"] == daskbox.__version__
    assert labels["dev.daskbox.groups"] == "main"
    assert (
        labels["dev.daskbox.installed-digest"]
        == dict(plan.dockerfile_plan.labels)["dev.daskbox.installed-digest"]
    )
    # The fixture project is a clean git checkout: its commit is the source revision.
    assert labels["org.opencontainers.image.revision"] == built["commit"]
    assert labels["org.opencontainers.image.title"] == "fixture-app"
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert labels["org.opencontainers.image.base.name"] == plan.settings.base_image
    base_id = docker.from_env().images.get(plan.settings.base_image).id
    assert labels["org.opencontainers.image.base.digest"] == base_id  # a local stand-in
    assert (
        find_pushed(plan.reference) == f"{plan.image.repository}@{built['push'].reference.digest}"
    )


def current(project):
    """Plan, build and push the project as it is now (daskbox's own entrypoint may have
    changed since the module fixture ran, in this repository under development)."""
    plan = plan_image(project)
    build_image(plan, DockerEngine(), lambda _: None)
    return plan, push_image(plan, DockerEngine(), lambda _: None)


def test_second_build_push_does_nothing(built):
    assert built["result"].built and built["push"].bytes_uploaded > 0
    first_plan, first_push = current(built["project"])
    plan = plan_image(built["project"])
    assert plan.reference == first_plan.reference
    assert not build_image(plan, DockerEngine(), lambda _: None).built
    again = push_image(plan, DockerEngine(), lambda _: None)
    assert again.layers_pushed == 0 and again.bytes_uploaded == 0
    assert again.reference.digest == first_push.reference.digest


def test_code_only_change_rebuilds_and_pushes_only_the_last_layer(built, docker_client):
    project = built["project"]
    unchanged, _ = current(project)
    before = docker_client.api.inspect_image(unchanged.reference)["RootFS"]["Layers"]
    module = project / "src" / "fixture_app" / "__init__.py"
    original = module.read_text()
    module.write_text(original + "\nVERSION_NOTE = 'changed'\n")
    try:
        plan = plan_image(project)
        assert plan.reference != unchanged.reference
        assert build_image(plan, DockerEngine(), lambda _: None).built
        after = docker_client.api.inspect_image(plan.reference)["RootFS"]["Layers"]
        assert len(after) == len(before)
        assert after[:-1] == before[:-1] and after[-1] != before[-1]
        pushed = push_image(plan, DockerEngine(), lambda _: None)
        assert pushed.layers_pushed == 1
        assert pushed.bytes_uploaded < 1_000_000
        assert "changed" in run_in_image(
            plan.reference,
            "/opt/venv/bin/python",
            "-c",
            "import fixture_app; print(fixture_app.VERSION_NOTE)",
        )
    finally:
        module.write_text(original)


def test_bad_credentials_are_refused(built, registry, tmp_path, monkeypatch):
    config = docker_config_dir(tmp_path / "bad", registry, "wrong-password")
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    plan = built["plan"]
    other = plan_image(built["project"], {"repository": plan.image.repository + "-denied"})
    DockerEngine().tag(built["result"].image_id, other.image)
    with pytest.raises(PushError, match=r"refused the credentials.*docker login") as raised:
        push_image(other, DockerEngine(), lambda _: None)
    assert "\n" not in str(raised.value)


def test_unreachable_registry(built, tmp_path):
    plan = plan_image(built["project"], {"repository": "127.0.0.1:9/images-unreachable"})
    DockerEngine().tag(built["result"].image_id, plan.image)
    try:
        with pytest.raises(PushError, match=r"registry 127.0.0.1:9 unreachable"):
            push_image(plan, DockerEngine(), lambda _: None)
    finally:
        remove_repository_images(docker.from_env(), plan.image.repository)


def test_invalid_repository_name(built):
    with pytest.raises(ConfigError, match="invalid image reference 'Bad/Name'"):
        plan_image(built["project"], {"repository": "Bad/Name"})


def test_docker_engine_not_running(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(ImageBuildError, match=r"Docker engine not reachable.*start Docker"):
        DockerEngine()


def test_invoke_tasks_end_to_end(built):
    """The user's view: `invoke build push` in the project, then the error path of a task."""
    invoke = str(Path(sys.executable).parent / "invoke")
    project: Path = built["project"]
    (project / "tasks.py").write_text("from daskbox.tasks import ns  # noqa: F401\n")
    for _ in range(2):  # the second run finds everything done
        done = subprocess.run(
            [invoke, "build", "push"],
            cwd=project,
            capture_output=True,
            text=True,
            env=os.environ.copy(),
            check=False,
        )
        assert done.returncode == 0, done.stderr
    assert "is up to date" in done.stdout and "already in the registry" in done.stdout
    printed = subprocess.run(
        [invoke, "dockerfile"], cwd=project, capture_output=True, text=True, check=True
    ).stdout
    assert printed == plan_image(project).dockerfile
    (project / "poetry.lock").rename(project / "poetry.lock.bak")
    try:
        failed = subprocess.run(
            [invoke, "build"], cwd=project, capture_output=True, text=True, check=False
        )
    finally:
        (project / "poetry.lock.bak").rename(project / "poetry.lock")
    assert failed.returncode == 1
    assert failed.stderr.strip().count("\n") == 0 and "run `poetry lock`" in failed.stderr


def test_distribution_without_wheel_is_built_from_its_sdist(
    tmp_path, registry, base_image, docker_client
):
    """docopt 0.6.2 exists only as an sdist: built offline in the builder stage."""
    repository = f"{registry.host}/images-sdist-{uuid.uuid4().hex[:8]}"
    project = copy_project("sdist_only", tmp_path, repository)
    plan = plan_image(project)
    lines: list[str] = []
    try:
        fetched = fetch_index_distributions(plan.environment, lines.append)
        assert [(name, sdist.filename) for name, sdist in fetched.sdists] == [
            ("docopt", "docopt-0.6.2.tar.gz")
        ]
        # Its build requirements are pinned by hash for the image's sdists stage.
        pinned = fetched.build_requirements_txt().splitlines()
        assert pinned and all(
            re.fullmatch(r"[\w.-]+==\S+ --hash=sha256:[0-9a-f]{64}", line) for line in pinned
        )
        assert any(w.filename.startswith("setuptools-") for w in fetched.build_wheels)
        build_image(plan, DockerEngine(), lines.append)
        listed = json.loads(
            run_in_image(
                plan.reference,
                "/usr/local/bin/python",
                "-m",
                "pip",
                "--python",
                "/opt/venv/bin/python",
                "list",
                "--format=json",
            )
        )
        installed = {canonicalize_name(p["name"]): p["version"] for p in listed}
        assert installed["docopt"] == "0.6.2"
        # The build tools used for the sdist stayed in the builder stage.
        assert installed.keys() == {str(r.name) for r in plan.environment.requirements}
    finally:
        remove_repository_images(docker_client, repository)


def test_apt_packages_are_fetched_on_the_host_and_installed_offline(
    tmp_path, base_image, docker_client
):
    repository = f"localhost:5000/images-apt-{uuid.uuid4().hex[:8]}"
    project = copy_project("non_package", tmp_path, repository)
    with (project / "pyproject.toml").open("a") as pyproject:
        pyproject.write('apt-packages = ["jq"]\n')
    plan = plan_image(project)
    assert "dpkg --install --recursive /tmp/daskbox/apt" in plan.dockerfile
    try:
        build_image(plan, DockerEngine(), lambda _: None)
        assert run_in_image(plan.reference, "jq", "--version").startswith("jq-")
        status = run_in_image(
            plan.reference, "dpkg-query", "--show", "--showformat=${Status}", "jq"
        )
        assert status == "install ok installed"
        # The .debs are in no layer of the image (not merely deleted in a later one) ...
        layer_files = files_per_layer(plan.reference)
        assert not [n for names in layer_files for n in names if n.endswith(".deb")]
        assert not [n for names in layer_files for n in names if n.startswith("tmp/daskbox")]
        # ... and the layer dpkg's results came in holds jq, not the whole base again.
        (system_layer,) = [names for names in layer_files if "usr/bin/jq" in names]
        assert len(system_layer) < 200
        # Not a git checkout: the revision label says so.
        labels = docker_client.api.inspect_image(plan.reference)["Config"]["Labels"]
        assert labels["org.opencontainers.image.revision"] == "unknown"
    finally:
        remove_repository_images(docker_client, repository)


def test_unknown_apt_package_is_refused_by_name(tmp_path, base_image):
    project = copy_project("non_package", tmp_path, "localhost:5000/images-apt-missing")
    with (project / "pyproject.toml").open("a") as pyproject:
        pyproject.write('apt-packages = ["no-such-package-daskbox"]\n')
    with pytest.raises(DockerfileError, match=r"cannot fetch apt-packages no-such-package-daskbox"):
        build_image(plan_image(project), DockerEngine(), lambda _: None)


def test_a_forced_rebuild_removes_the_image_it_replaces(
    tmp_path, registry, registry_login, base_image, docker_client
):
    repository = f"{registry.host}/images-force-{uuid.uuid4().hex[:8]}"
    plan = plan_image(copy_project("non_package", tmp_path, repository))
    kept = f"images-force-kept-{uuid.uuid4().hex[:8]}"
    try:
        first = build_image(plan, DockerEngine(), lambda _: None)
        push_image(plan, DockerEngine(), lambda _: None)  # it has a repo digest now
        second = build_image(plan, DockerEngine(), lambda _: None, force=True)
        assert second.built and second.image_id != first.image_id
        with pytest.raises(docker.errors.ImageNotFound):
            docker_client.images.get(first.image_id)  # untagged and unused: removed
        # Still used by a tag of its own, the replaced image stays.
        docker_client.api.tag(second.image_id, kept, "mine")
        third = build_image(plan, DockerEngine(), lambda _: None, force=True)
        assert docker_client.images.get(second.image_id).tags == [f"{kept}:mine"]
        assert docker_client.images.get(plan.reference).id == third.image_id
        assert docker_client.images.get(str(plan.moving)).id == third.image_id
    finally:
        remove_repository_images(docker_client, repository)
        remove_repository_images(docker_client, kept)


def test_push_alone_pushes_the_image_build_recorded(tmp_path, registry, registry_login, base_image):
    """`invoke build --extras tables`, then `invoke push` in another command: push takes the
    image of the record, not one planned again from the configuration."""
    invoke = str(Path(sys.executable).parent / "invoke")
    repository = f"{registry.host}/images-record-{uuid.uuid4().hex[:8]}"
    project = copy_project("extras_groups_markers", tmp_path, repository)
    (project / "tasks.py").write_text("from daskbox.tasks import ns  # noqa: F401\n")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [invoke, *args], cwd=project, capture_output=True, text=True, check=False
        )

    try:
        built = run("build", "--extras", "tables")
        assert built.returncode == 0, built.stderr
        record = read_record(project, "linux/amd64")
        assert record.extras == ("tables",) and record.pinned is None
        would = run("push", "--dry-run")
        assert would.returncode == 0, would.stderr
        assert f"would push {record.reference} and {repository}:latest" in would.stdout
        pushed = run("push")
        assert pushed.returncode == 0, pushed.stderr
        after = read_record(project, "linux/amd64")
        assert after.pinned == find_pushed(record.reference)
        assert after.pinned is not None and after.built_at == record.built_at
        again = run("push")
        assert again.returncode == 0 and "already in the registry" in again.stdout
        # The recorded image gone, push says so and does not build another.
        docker.from_env().images.remove(record.reference)
        docker.from_env().images.remove(f"{repository}:latest")
        gone = run("push")
        assert gone.returncode == 1
        assert gone.stderr.strip() == (
            f"error: {record.reference}, recorded by `invoke build`, is not a local image any "
            "more: run `invoke build --extras tables push`"
        )
    finally:
        remove_repository_images(docker.from_env(), repository)
