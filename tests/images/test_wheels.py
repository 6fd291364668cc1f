"""Fetching target wheels on the host, against the lock's hashes (uses the package index)."""

from __future__ import annotations

import subprocess
import zipfile

import pytest
from packaging.utils import parse_wheel_filename

from daskbox.errors import DockerfileError
from daskbox.images.environment import Environment, Requirement, Source, Target
from daskbox.images.lock import export_environment
from daskbox.images.wheels import build_local_wheels, fetch_index_distributions, file_sha256

from .conftest import copy_project


def environment_of(*requirements: Requirement) -> Environment:
    return Environment(
        project_name="probe",
        project_version="0",
        package_mode=False,
        target=Target.local(),
        groups=("main",),
        extras=(),
        lock_hash="0" * 64,
        requirements=requirements,
    )


def test_every_wheel_fits_the_target_and_matches_a_locked_hash(tmp_path):
    environment = export_environment(copy_project("quickstart", tmp_path), Target.local())
    messages: list[str] = []
    fetched = fetch_index_distributions(environment, messages.append, cache=tmp_path / "cache")
    assert messages and "downloading" in messages[0]
    assert len(fetched.wheels) == len(environment.index_requirements) and not fetched.sdists
    target_tags = environment.target.tags
    for requirement, wheel in zip(environment.index_requirements, fetched.wheels, strict=True):
        name, version, _, tags = parse_wheel_filename(wheel.filename)
        assert (name, str(version)) == (requirement.name, requirement.version)
        assert tags & target_tags  # linux x86_64 / this CPython, whatever the host is
        assert f"sha256:{file_sha256(wheel.path)}" in requirement.hashes
    # A second fetch is served from the cache: nothing is downloaded.
    messages.clear()
    assert fetch_index_distributions(environment, messages.append, tmp_path / "cache") == fetched
    assert messages == []


def test_a_file_not_matching_the_lock_is_refused_by_name(tmp_path):
    tampered = Requirement("docopt", "0.6.2", Source.INDEX, hashes=("sha256:" + "0" * 64,))
    with pytest.raises(
        DockerfileError, match=r"no hash-matching wheel or sdist .* docopt==0\.6\.2"
    ):
        fetch_index_distributions(environment_of(tampered), lambda _: None, tmp_path / "cache")


def test_git_and_path_dependencies_are_built_into_wheels(tmp_path):
    """A git dependency (a local repository, so no network) and a path dependency."""
    library = copy_project("path_dependency", tmp_path) / "libs" / "helper_lib"
    repository = tmp_path / "git-lib"
    repository.mkdir()
    (repository / "pyproject.toml").write_text(
        (library / "pyproject.toml").read_text().replace('"helper-lib"', '"git-lib"')
        .replace('"helper_lib"', '"git_lib"')
    )  # fmt: skip
    (repository / "src" / "git_lib").mkdir(parents=True)
    (repository / "src" / "git_lib" / "__init__.py").write_text("VALUE = 1\n")

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repository), "-c", "user.name=t", "-c", "user.email=t@t", *args],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip

    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "lib")
    revision = git("rev-parse", "HEAD")
    environment = environment_of(
        Requirement("git-lib", None, Source.VCS, url=f"git+file://{repository}@{revision}"),
        Requirement("helper-lib", None, Source.DIRECTORY, url=library.as_uri()),
    )
    wheels = build_local_wheels(tmp_path, environment, tmp_path / "out", lambda _: None)
    assert [w.filename for w in wheels] == [
        "git_lib-1.2.0-py3-none-any.whl",
        "helper_lib-1.2.0-py3-none-any.whl",
    ]
    with zipfile.ZipFile(wheels[0].path) as archive:
        assert archive.read("git_lib/__init__.py") == b"VALUE = 1\n"
