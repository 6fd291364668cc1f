"""Plan -> Dockerfile text and the deterministic context. No image is built; the engine is
only asked for the base image's identity (the stand-in base from tests/conftest.py)."""

from __future__ import annotations

import hashlib
import io
import tarfile
import uuid

import pytest

from daskbox.errors import ConfigError, DockerfileError
from daskbox.images.context import ContextFile, write_context
from daskbox.images.layers import venv_layer
from daskbox.images.pipeline import context_files, plan_image, prepare_layers
from daskbox.images.settings import load_settings
from daskbox.images.wheels import FetchedDistributions

from .conftest import copy_project

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("base_image")]


def instructions(text: str) -> list[str]:
    return [line.split()[0] for line in text.splitlines() if line and line[0].isupper()]


def test_plan_renders_stages_in_cache_order(tmp_path):
    plan = plan_image(copy_project("package_mode", tmp_path))
    text = plan.dockerfile
    assert plan.local_wheels[0].filename == "fixture_app-0.1.0-py3-none-any.whl"
    # A wheel-only lock: one stage, the base, and no step that runs in the image.
    assert text.count("\nFROM ") == 1 and f"\nFROM {plan.base.from_reference}\n" in text
    assert "\nRUN " not in text
    order = [
        " ".join(line.split()[:2])
        for line in text.splitlines()
        if line.startswith(("COPY", "RUN", "ADD"))
    ]
    # Layers from rarely to often changed; the project's files are the last layer.
    assert order == [
        "ADD layers/user.tar",
        "ADD layers/venv.tar",
        "ADD layers/entrypoint.tar",
        "ADD layers/project.tar",
    ]
    # Only metadata after the last layer: it never busts the cache.
    steps = instructions(text.split("ADD layers/project.tar /\n", 1)[1])
    assert set(steps) <= {"USER", "WORKDIR", "EXPOSE", "ENV", "ENTRYPOINT", "ARG", "LABEL"}
    assert 'ENTRYPOINT ["/opt/venv/bin/python", "-m", "daskbox.entrypoint"]' in text
    assert "EXPOSE 8786 8787" in text and f"DASKBOX_LOCK_HASH={plan.lock_hash}" in text
    labels = dict(plan.dockerfile_plan.labels)
    assert labels["dev.daskbox.python-version"] == plan.environment.target.python_version
    assert labels["dev.daskbox.python-version"] == plan.base.python_version
    assert labels["dev.daskbox.platform"] == "linux/amd64" == plan.platform
    assert labels["dev.daskbox.lock-hash"] == plan.lock_hash
    assert plan.reference.startswith("localhost:5000/fixture-app:")


def test_non_package_project_has_no_project_layer(tmp_path):
    plan = plan_image(copy_project("non_package", tmp_path))
    assert plan.local_wheels == ()
    assert "project.tar" not in plan.dockerfile


def test_path_dependency_is_built_into_the_project_layer(tmp_path):
    plan = plan_image(copy_project("path_dependency/app", tmp_path))
    assert [w.filename for w in plan.local_wheels] == ["helper_lib-1.2.0-py3-none-any.whl"]
    assert "helper-lib" not in plan.environment.requirements_txt()  # not from an index
    assert plan.dockerfile.count("ADD layers/project.tar /") == 1
    layer = venv_layer(plan.local_wheels, plan.base, skeleton=False)
    with tarfile.open(layer.path) as archive:
        members = {m.name: m for m in archive.getmembers()}
    site = f"opt/venv/lib/python{plan.environment.target.python_minor}/site-packages"
    assert f"{site}/helper_lib/__init__.py" in members
    with tarfile.open(layer.path) as archive:
        installer = archive.extractfile(f"{site}/helper_lib-1.2.0.dist-info/INSTALLER")
        assert installer is not None and installer.read() == b"daskbox\n"
    # An overlay of the image's venv: no pyvenv.cfg, no interpreter links of its own.
    assert "opt/venv/pyvenv.cfg" not in members and "opt/venv/bin/python" not in members
    assert all(m.mtime == 0 and m.uid == 0 for m in members.values())


def test_concurrent_plans_keep_each_others_wheels(tmp_path):
    """A plan (say, a launch) never deletes the wheels of another plan being built."""
    project = copy_project("package_mode", tmp_path)
    first = plan_image(project)
    module = project / "src" / "fixture_app" / "__init__.py"
    module.write_text(module.read_text() + "\nCHANGED = True\n")
    second = plan_image(project)
    again = plan_image(project)
    assert second.reference != first.reference and again.reference == second.reference
    for plan in (first, second):
        (wheel,) = plan.local_wheels
        assert wheel.path.is_file() and hashlib.sha256(wheel.path.read_bytes()).hexdigest() == (
            wheel.sha256
        )
    assert first.local_wheels[0].path != second.local_wheels[0].path
    assert again.local_wheels == second.local_wheels


def test_apt_packages_are_installed_in_a_stage_of_their_own(tmp_path):
    project = copy_project("non_package", tmp_path, "localhost:5000/images-apt")
    with (project / "pyproject.toml").open("a") as pyproject:
        pyproject.write('apt-packages = ["jq"]\n')
    plan = plan_image(project)
    stage, runtime = plan.dockerfile.split(f"\nFROM {plan.base.from_reference}\n", 1)
    assert f"FROM {plan.base.from_reference} AS system-packages" in stage
    assert "COPY apt/ /tmp/daskbox/apt/" in stage and "dpkg --install" in stage
    assert "touch --no-dereference --date=@0" in stage  # a layer with fixed mtimes
    steps = [line for line in runtime.splitlines() if line.startswith(("COPY", "RUN", "ADD"))]
    # The user's files first (they follow the base), then what dpkg installed.
    assert steps[:3] == [
        "ADD layers/user.tar /",
        "COPY --from=system-packages /tmp/daskbox/root/ /",
        "ADD layers/venv.tar /",
    ]
    assert "apt/" not in runtime and "dpkg" not in runtime and "RUN" not in runtime


def test_sdists_build_in_a_stage_of_the_target_platform(tmp_path):
    """The lock has no Linux wheel of netifaces: its sdist is built with build-essential (and
    the configured build-only packages) in a stage of the target platform."""
    project = copy_project("sdist_c", tmp_path)
    with (project / "pyproject.toml").open("a") as pyproject:
        pyproject.write('\n[tool.daskbox]\nbuild-apt-packages = ["libffi-dev"]\n')
    plan = plan_image(project)
    assert plan.dockerfile_plan.sdists == (("netifaces", "netifaces-0.11.0.tar.gz"),)
    stage = plan.dockerfile.split("\nFROM ", 2)[1]
    assert stage.startswith(f"{plan.base.from_reference} AS sdists")
    assert "build-essential, libffi-dev" in plan.dockerfile
    assert "--require-hashes" in stage and "build netifaces netifaces-0.11.0.tar.gz" in stage
    assert "COPY --from=sdists /opt/venv/ /opt/venv/" in plan.dockerfile


def test_platform_setting_is_checked(tmp_path):
    project = copy_project("non_package", tmp_path)
    for given, hint in (
        ("arm64", "linux/arm64"),
        ("linux/x86_64", "linux/amd64"),
        ("windows/amd64", "linux/amd64"),
    ):
        with pytest.raises(ConfigError, match=rf"platform '{given}' is not supported: use {hint}"):
            load_settings(project, {"platform": given})
    assert load_settings(project, {"platform": "linux/arm64"}).platform == "linux/arm64"


def test_a_wheel_built_for_this_machine_is_refused_for_another_platform(tmp_path, arm64_base):
    """omp-ext (a path dependency with C code) compiles on this host for its own machine only."""
    project = copy_project("needs_libgomp/app", tmp_path)
    with pytest.raises(
        DockerfileError,
        match=r"^omp-ext was built on this machine as "
        r"omp_ext-0\.1\.0-cp3\d+-cp3\d+-linux_x86_64\.whl, which does not install "
        r"on linux/arm64",
    ):
        plan_image(project, {"platform": "linux/arm64", "base-image": arm64_base})


def test_content_tag_follows_the_base_images_content_not_just_its_name(
    tmp_path, base_image, docker_client
):
    project = copy_project("non_package", tmp_path)
    name = f"images-base-{uuid.uuid4().hex[:8]}:1"
    docker_client.images.get(base_image).tag(name)
    try:
        before = plan_image(project, {"base-image": name})
        labels = dict(before.dockerfile_plan.labels)
        assert labels["org.opencontainers.image.base.name"] == name
        assert labels["org.opencontainers.image.base.digest"] == (
            docker_client.images.get(base_image).id  # built locally: no registry digest
        )
        # Same name, different content (as after `docker pull` of a newer python image).
        with write_context(
            {"Dockerfile": ContextFile(data=f"FROM {base_image}\nLABEL changed=yes\n".encode())}
        ) as context:
            changed, _ = docker_client.images.build(
                fileobj=context, custom_context=True, tag=name, network_mode="none", rm=True
            )
        after = plan_image(project, {"base-image": name})
        assert after.dockerfile_plan.base_image == before.dockerfile_plan.base_image
        assert after.reference != before.reference
        assert dict(after.dockerfile_plan.labels)["org.opencontainers.image.base.digest"] == (
            changed.id
        )
    finally:
        docker_client.images.remove(name, force=True)


def test_misspelled_settings_keys_are_refused_with_a_hint(tmp_path):
    project = copy_project("non_package", tmp_path)
    pyproject = project / "pyproject.toml"
    original = pyproject.read_text()
    assert "[tool.daskbox]" not in original
    for key, hint in (("apt_packages", "apt-packages"), ("base_image", "base-image")):
        pyproject.write_text(
            original + f'\n[tool.daskbox]\n{key} = "x"\n[tool.daskbox.gcloud]\nzone = "z"\n'
        )
        with pytest.raises(ConfigError, match=rf"unknown key '{key}' \(did you mean '{hint}'\?\)"):
            load_settings(project)
    pyproject.write_text(original + '\n[tool.daskbox]\nrepo = "x"\n')
    with pytest.raises(ConfigError, match=r"unknown key 'repo'"):
        plan_image(project)
    pyproject.write_text(
        original + '\n[tool.daskbox]\napt-packages = ["jq"]\n[tool.daskbox.gcloud]\n'
    )
    assert load_settings(project).apt_packages == ("jq",)
    with pytest.raises(ConfigError, match=r"invoke config daskbox: unknown key 'extra'"):
        load_settings(project, {"extra": ["x"]})


def test_content_tag_is_stable_and_follows_code_changes(tmp_path):
    project = copy_project("package_mode", tmp_path)
    first = plan_image(project).reference
    assert plan_image(project).reference == first
    (project / "README.md").write_text("docs are not in the wheel\n")
    assert plan_image(project).reference == first
    module = project / "src" / "fixture_app" / "__init__.py"
    module.write_text(module.read_text() + "\nCHANGED = True\n")
    changed = plan_image(project)
    assert changed.reference != first
    assert changed.environment.fingerprint == plan_image(project).environment.fingerprint


def test_context_is_byte_identical_and_normalized(tmp_path):
    plan = plan_image(copy_project("package_mode", tmp_path))
    fetched = FetchedDistributions(())
    files = context_files(plan, prepare_layers(plan, fetched), fetched)
    digests = []
    for _ in range(2):
        with write_context(files) as stream:
            data = stream.read()
        digests.append(hashlib.sha256(data).hexdigest())
    assert digests[0] == digests[1]
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        members = archive.getmembers()
    names = [m.name for m in members if m.isfile()]
    assert names == sorted(names)
    assert names == [
        "Dockerfile",
        "layers/entrypoint.tar",
        "layers/project.tar",
        "layers/user.tar",
        "layers/venv.tar",
    ]
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" for m in members)


def test_context_accepts_files_and_bytes(tmp_path):
    on_disk = tmp_path / "x.whl"
    on_disk.write_bytes(b"wheel")
    files = {"b/x.whl": ContextFile(path=on_disk), "a": ContextFile(data=b"1")}
    with write_context(files) as stream, tarfile.open(fileobj=stream) as archive:
        assert [m.name for m in archive.getmembers()] == ["b", "a", "b/x.whl"]
        assert archive.extractfile("b/x.whl").read() == b"wheel"
