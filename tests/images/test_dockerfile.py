"""Plan -> Dockerfile text and the deterministic context: pure, no Docker."""

from __future__ import annotations

import hashlib
import io
import tarfile

from daskbox.images.context import ContextFile, write_context
from daskbox.images.pipeline import context_files, plan_image
from daskbox.images.wheels import Fetched

from .conftest import copy_project


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
    assert "COPY project/ /opt/venv/" in plan.dockerfile


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
        plan_image(project, {"groups": ["main"], "base-image": "python:3.11.7-slim"}).reference
        != changed.reference
    )


def test_context_is_byte_identical_and_normalized(tmp_path):
    plan = plan_image(copy_project("package_mode", tmp_path))
    files = context_files(plan, Fetched(()), None)
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
