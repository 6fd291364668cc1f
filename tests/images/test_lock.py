"""Lock -> Environment through the user's `poetry export`: groups, extras, markers, and every
refusal. The poetry CLI is the one next to this interpreter (daskbox's dev group)."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from daskbox._pyproject import parse_toml
from daskbox.errors import ConfigError, LockfileError
from daskbox.images.environment import Platform, Source
from daskbox.images.lock import export_environment, lock_hash, parse_export

from .conftest import copy_project

# Drives invoke, poetry or gcloud: with the full suite, not the quick in-process runs.
pytestmark = pytest.mark.cli

TARGET = Platform.local()


def locked_versions(project) -> dict[str, str]:
    lock = parse_toml((project / "poetry.lock").read_text())
    return {package["name"]: package["version"] for package in lock["package"]}


def test_quickstart_exports_main_group_pinned_with_hashes(tmp_path):
    project = copy_project("quickstart", tmp_path)
    environment = export_environment(project, TARGET)
    versions = locked_versions(project)
    assert {"numpy", "distributed", "psutil", "dask"} <= environment.names()
    # daskbox sits in the dev group: neither it nor its own dependencies reach the image.
    assert not {"daskbox", "poetry", "docker", "invoke"} & environment.names()
    for requirement in environment.requirements:
        assert requirement.source is Source.INDEX
        assert requirement.version == versions[requirement.name]
        assert requirement.hashes and all(h.startswith("sha256:") for h in requirement.hashes)
    assert environment.lock_hash == lock_hash(project)
    assert environment.package_mode


def test_markers_are_evaluated_for_linux_and_the_local_python(tmp_path):
    project = copy_project("extras_groups_markers", tmp_path)
    environment = export_environment(project, TARGET)
    names = environment.names()
    assert "six" in names  # sys_platform == 'linux'
    assert "colorama" not in names  # sys_platform == 'win32'
    assert ("tomli" in names) == (sys.version_info < (3, 11))  # python_version < '3.11'
    # Every line of the export is kept, markers unevaluated, for the image record.
    locked = {r.name: r.marker for r in environment.locked}
    assert locked["colorama"].endswith('sys_platform == "win32"')
    assert {"colorama", "six", "tomli"} <= set(locked)


def test_groups_and_extras_are_selected_explicitly(tmp_path):
    project = copy_project("extras_groups_markers", tmp_path)
    main_only = export_environment(project, TARGET).names()
    assert not {"tabulate", "iniconfig", "pluggy"} & main_only
    chosen = export_environment(project, TARGET, groups=("main", "reports"), extras=("tables",))
    assert chosen.names() - main_only == {"iniconfig", "tabulate"}
    assert chosen.groups == ("main", "reports") and chosen.extras == ("tables",)


def test_export_is_identical_across_runs_and_cached(tmp_path):
    project = copy_project("non_package", tmp_path)
    first = export_environment(project, TARGET)
    assert list((project / ".daskbox" / "cache").glob("export-*.json"))
    second = export_environment(project, TARGET)
    assert first == second
    assert not first.package_mode


def test_exports_of_an_older_lock_are_pruned(tmp_path):
    project = copy_project("extras_groups_markers", tmp_path)
    cache = project / ".daskbox" / "cache"
    export_environment(project, TARGET)
    export_environment(project, TARGET, groups=("main", "reports"))
    current = sorted(cache.glob("export-*.json"))
    assert len(current) == 2  # two selections of the same lock both stay cached
    lock = project / "poetry.lock"
    lock.write_text(lock.read_text() + "\n# relocked\n")  # new bytes, still fresh
    export_environment(project, TARGET)
    (left,) = cache.glob("export-*.json")
    assert left not in current and left.name.startswith(f"export-{lock_hash(project)[:16]}-")


def test_path_dependency_is_a_directory_requirement(tmp_path):
    project = copy_project("path_dependency/app", tmp_path)
    environment = export_environment(project, TARGET)
    (helper,) = environment.local_requirements
    assert helper.name == "helper-lib" and helper.source is Source.DIRECTORY
    assert "helper-lib" not in environment.requirements_txt()


def test_missing_lock_is_refused(tmp_path):
    project = copy_project("non_package", tmp_path)
    (project / "poetry.lock").unlink()
    with pytest.raises(LockfileError, match=r"no poetry.lock .*run `poetry lock`"):
        export_environment(project, TARGET)


def test_stale_lock_is_refused(tmp_path):
    project = copy_project("stale_lock", tmp_path)
    with pytest.raises(LockfileError, match=r"stale against pyproject.toml: run `poetry lock`"):
        export_environment(project, TARGET)


def test_python_constraint_excluding_the_target_is_refused(tmp_path):
    project = copy_project("python39", tmp_path)
    with pytest.raises(
        LockfileError, match=rf"requires Python >=3.9,<3.10 .* Python is {TARGET.python_version}"
    ):
        export_environment(project, TARGET)


def test_a_poetry_python_range_excluding_the_target_is_named(tmp_path):
    """Poetry-only range (`~3.10`): the export's markers leave nothing for another Python;
    the error names that range, not a missing distributed (a real project hit this)."""
    project = copy_project("poetry_python_range", tmp_path)
    with pytest.raises(
        LockfileError,
        match=rf"allows Python ~3\.10 \(\[tool\.poetry\.dependencies\] python\) but the "
        rf"image's Python is {TARGET.python_version}",
    ):
        export_environment(project, TARGET)


def test_missing_distributed_is_refused(tmp_path):
    project = copy_project("no_distributed", tmp_path)
    with pytest.raises(
        LockfileError, match=r"distributed, psutil missing .*poetry add distributed"
    ):
        export_environment(project, TARGET)


def test_unknown_group_and_extra_are_refused(tmp_path):
    project = copy_project("extras_groups_markers", tmp_path)
    with pytest.raises(ConfigError, match=r"unknown dependency group.*nope"):
        export_environment(project, TARGET, groups=("main", "nope"))
    with pytest.raises(ConfigError, match=r"unknown extra.*nope.*tables"):
        export_environment(project, TARGET, extras=("nope",))


def test_parse_export_reads_markers_urls_and_index_options():
    text = (
        "--extra-index-url https://example.invalid/simple\n\n"
        'a==1.0 ; sys_platform == "linux" \\\n    --hash=sha256:bb \\\n    --hash=sha256:aa\n'
        'b==2.0 ; sys_platform == "darwin" \\\n    --hash=sha256:cc\n'
        "c @ git+https://example.invalid/c.git@0123abc\n"
    )
    requirements, options = parse_export(text)
    assert options == ("--extra-index-url https://example.invalid/simple",)
    assert [r.name for r in requirements] == ["a", "b", "c"]
    assert [r.name for r in requirements if r.applies_to(TARGET)] == ["a", "c"]
    assert requirements[0].hashes == ("sha256:aa", "sha256:bb")
    assert requirements[0].pip_line == "a==1.0 --hash=sha256:aa --hash=sha256:bb"
    assert requirements[1].marker == 'sys_platform == "darwin"'
    assert requirements[2].source is Source.VCS


def fake_poetry(folder, script: str) -> None:
    """Put a ``poetry`` first on PATH that runs ``script`` (sh) with the real one at hand."""
    folder.mkdir()
    real = next(
        str(candidate)
        for directory in os.environ["PATH"].split(os.pathsep)
        if (candidate := Path(directory, "poetry")).is_file()
    )
    wrapper = folder / "poetry"
    wrapper.write_text(f"#!/bin/sh\nREAL={real}\n{script}\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def path_with(monkeypatch, tmp_path):
    def put_first(script: str) -> None:
        fake_poetry(tmp_path / "bin", script)
        monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")

    return put_first


def test_poetry_without_the_export_plugin_names_the_one_line_fix(tmp_path, path_with):
    project = copy_project("non_package", tmp_path)
    path_with('exec "$REAL" --no-plugins "$@"')  # Poetry 2 ships without `export`
    with pytest.raises(
        LockfileError,
        match=r"^your poetry has no export command: run "
        r"`poetry self add poetry-plugin-export`$",
    ):
        export_environment(project, TARGET)


def test_poetry_older_than_the_lock_writer_is_refused(tmp_path, path_with):
    project = copy_project("non_package", tmp_path)
    version_two_zero = 'echo "Poetry (version 2.0.0)"; exit 0'
    path_with(f'[ "$1" = --version ] && {{ {version_two_zero}; }}; exec "$REAL" "$@"')
    expected = r"written by Poetry 2\.\S+ but `poetry` here is 2\.0\.0: upgrade it"
    with pytest.raises(LockfileError, match=expected + r" \(`poetry self update`\)"):
        export_environment(project, TARGET)


def test_missing_poetry_is_one_line(tmp_path, monkeypatch):
    project = copy_project("non_package", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(LockfileError, match=r"the poetry command is not on PATH: install Poetry"):
        export_environment(project, TARGET)


def test_a_lock_the_export_walker_rejects_is_one_line_with_the_fix(tmp_path):
    """An old-format lock with six locked twice and conflicting ranges of it (fixture notes)."""
    project = copy_project("walker_rejects", tmp_path)
    with pytest.raises(LockfileError) as failed:
        export_environment(project, TARGET)
    assert str(failed.value) == (
        f"{project / 'poetry.lock'} is in the old lock format and Poetry's export cannot pick "
        "one version of six (it elects six (1.17.0) but six (<1.16) is also required): relock "
        "with Poetry 2 (`poetry lock`) so the lock records groups and markers"
    )
