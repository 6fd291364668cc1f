"""Plan -> Dockerfile text and the deterministic context. No image is built; the engine is
only asked for the base image's identity (the stand-in base from tests/conftest.py)."""

from __future__ import annotations

import hashlib
import io
import tarfile
import uuid

import pytest

from daskbox.errors import ConfigError
from daskbox.images.context import ContextFile, write_context
from daskbox.images.pipeline import context_files, plan_image
from daskbox.images.settings import load_settings
from daskbox.images.wheels import FetchedDistributions, install_overlay

from .conftest import copy_project

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("base_image")]


def instructions(text: str) -> list[str]:
    return [line.split()[0] for line in text.splitlines() if line and line[0].isupper()]


def test_plan_renders_stages_in_cache_order(tmp_path):
    plan = plan_image(copy_project("package_mode", tmp_path))
    text = plan.dockerfile
    assert plan.dockerfile_plan.project_wheels == ("fixture_app-0.1.0-py3-none-any.whl",)
    assert text.count("FROM python:3.11.7-slim-bookworm") == 2
    # The dependency install is offline and hash-checked.
    assert "--no-index --no-deps --require-hashes" in text
    runtime = text.split("\nFROM python:3.11.7-slim-bookworm\n", 1)[1]
    order = [
        line.split()[0] + " " + line.split()[1]
        for line in runtime.splitlines()
        if line.startswith(("COPY", "RUN"))
    ]
    # Layers from rarely to often changed; the project's files are the last layer.
    assert order == ["RUN useradd", "COPY --from=environment", "COPY daskbox/", "COPY project/"]
    # Only metadata after the last layer (lock hash, tag, labels): they never bust the cache.
    steps = instructions(runtime)
    assert steps[-3:] == ["ARG", "ENV", "LABEL"] and steps[-4] == "COPY"
    assert 'ENTRYPOINT ["/opt/venv/bin/python", "-m", "daskbox.entrypoint"]' in text
    assert "EXPOSE 8786 8787" in text and f"DASKBOX_LOCK_HASH={plan.lock_hash}" in text
    labels = dict(plan.dockerfile_plan.labels)
    assert labels["dev.daskbox.python-version"] == plan.environment.target.python_version
    assert labels["dev.daskbox.lock-hash"] == plan.lock_hash
    assert plan.reference.startswith("localhost:5000/fixture-app:")


def test_non_package_project_has_no_project_layer(tmp_path):
    plan = plan_image(copy_project("non_package", tmp_path))
    assert plan.local_wheels == ()
    assert "COPY project/" not in plan.dockerfile


def test_path_dependency_is_built_into_the_project_layer(tmp_path):
    plan = plan_image(copy_project("path_dependency/app", tmp_path))
    assert [w.filename for w in plan.local_wheels] == ["helper_lib-1.2.0-py3-none-any.whl"]
    assert "helper-lib" not in plan.environment.requirements_txt()  # not from an index
    assert plan.dockerfile.count("COPY project/ /opt/venv/") == 1
    overlay = install_overlay(plan.local_wheels, plan.environment.target, tmp_path / "overlay")
    files = context_files(plan, FetchedDistributions(()), overlay)
    site = "project/lib/python3.11/site-packages"
    assert f"{site}/helper_lib/__init__.py" in files
    assert f"{site}/helper_lib-1.2.0.dist-info/RECORD" in files
    assert files[f"{site}/helper_lib-1.2.0.dist-info/INSTALLER"].path.read_text() == "daskbox\n"


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
    text = plan_image(project).dockerfile
    stage, runtime = text.split("\nFROM python:3.11.7-slim-bookworm\n", 1)
    assert "FROM python:3.11.7-slim-bookworm AS system-packages" in stage
    assert "COPY apt/ /tmp/daskbox/apt/" in stage and "dpkg --install" in stage
    steps = [line for line in runtime.splitlines() if line.startswith(("COPY", "RUN"))]
    # Only what dpkg installed comes over, before useradd (a package may add users).
    assert steps[0] == "COPY --from=system-packages /tmp/daskbox/root/ /"
    assert steps[1].startswith("RUN useradd")
    assert "apt/" not in runtime and "dpkg" not in runtime


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
    # A digest-pinned base needs no lookup: its digest is its identity.
    pinned = "python:3.11.7-slim-bookworm@sha256:" + "ab" * 32
    plan = plan_image(project, {"base-image": pinned})
    assert dict(plan.dockerfile_plan.labels)["org.opencontainers.image.base.digest"] == (
        "sha256:" + "ab" * 32
    )


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
    assert (
        plan_image(
            project, {"groups": ["main"], "base-image": "python:3.11.7-slim@sha256:" + "cd" * 32}
        ).reference
        != changed.reference
    )


def test_context_is_byte_identical_and_normalized(tmp_path):
    plan = plan_image(copy_project("package_mode", tmp_path))
    files = context_files(plan, FetchedDistributions(()), None)
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
    assert {
        "Dockerfile",
        "requirements.txt",
        "daskbox/__init__.py",
        "daskbox/entrypoint/__main__.py",
    } <= set(names)
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" for m in members)


def test_context_accepts_files_and_bytes(tmp_path):
    on_disk = tmp_path / "x.whl"
    on_disk.write_bytes(b"wheel")
    files = {"b/x.whl": ContextFile(path=on_disk), "a": ContextFile(data=b"1")}
    with write_context(files) as stream, tarfile.open(fileobj=stream) as archive:
        assert [m.name for m in archive.getmembers()] == ["b", "a", "b/x.whl"]
        assert archive.extractfile("b/x.whl").read() == b"wheel"
