"""Fetching target wheels on the host, against the lock's hashes (uses the package index)."""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from packaging.utils import parse_wheel_filename

from daskbox.errors import DockerfileError
from daskbox.images.environment import Environment, Platform, Requirement, Source
from daskbox.images.lock import export_environment
from daskbox.images.wheels import (
    Artifact,
    _fetch_build_requirements,
    build_local_wheels,
    fetch_index_distributions,
    file_sha256,
)

from .conftest import copy_project

# Drives invoke, poetry or gcloud: with the full suite, not the quick in-process runs.
pytestmark = pytest.mark.cli


def environment_of(*requirements: Requirement) -> Environment:
    return Environment(
        project_name="probe",
        project_version="0",
        package_mode=False,
        target=Platform.local(),
        groups=("main",),
        extras=(),
        lock_hash="0" * 64,
        requirements=requirements,
    )


def test_every_wheel_fits_the_target_and_matches_a_locked_hash(tmp_path):
    environment = export_environment(copy_project("quickstart", tmp_path), Platform.local())
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
        DockerfileError, match=r"no hash-matching wheel for .* of docopt==0\.6\.2 \("
    ):
        fetch_index_distributions(environment_of(tampered), lambda _: None, tmp_path / "cache")


def test_git_and_path_dependencies_are_built_into_wheels(tmp_path):
    """A git dependency (a local repository, so no network) and a path dependency."""
    library = copy_project("path_dependency", tmp_path) / "libs" / "helper_lib"
    repository = tmp_path / "git-lib"
    repository.mkdir()
    (repository / "pyproject.toml").write_text(
        (library / "pyproject.toml")
        .read_text()
        .replace('"helper-lib"', '"git-lib"')
        .replace('"helper_lib"', '"git_lib"')
    )
    (repository / "src" / "git_lib").mkdir(parents=True)
    (repository / "src" / "git_lib" / "__init__.py").write_text("VALUE = 1\n")

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repository), "-c", "user.name=t", "-c", "user.email=t@t", *args],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

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


def test_url_dependencies_are_checked_against_the_locked_hash(tmp_path):
    """A direct-URL wheel and sdist (file URLs: no network) install only if their bytes
    match the lock; the sdist is built from the checked file."""
    library = copy_project("path_dependency", tmp_path) / "libs" / "helper_lib"
    (wheel,) = build_local_wheels(
        tmp_path,
        environment_of(Requirement("helper-lib", None, Source.DIRECTORY, url=library.as_uri())),
        tmp_path / "archives",
        lambda _: None,
    )
    sdist = tmp_path / "archives" / "helper_lib-1.2.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        archive.add(library, arcname="helper_lib-1.2.0")
    for archive_path in (wheel.path, sdist):
        good = Requirement(
            "helper-lib",
            None,
            Source.URL,
            url=archive_path.as_uri(),
            hashes=(f"sha256:{file_sha256(archive_path)}",),
        )
        out = tmp_path / f"out-{archive_path.suffix}"
        (built,) = build_local_wheels(tmp_path, environment_of(good), out, lambda _: None)
        assert built.filename == "helper_lib-1.2.0-py3-none-any.whl"
        tampered = Requirement(
            "helper-lib",
            None,
            Source.URL,
            url=archive_path.as_uri(),
            hashes=("sha256:" + "0" * 64,),
        )
        with pytest.raises(DockerfileError, match=r"matching poetry.lock's hashes"):
            build_local_wheels(tmp_path, environment_of(tampered), out, lambda _: None)
    unhashed = Requirement("helper-lib", None, Source.URL, url=sdist.as_uri())
    with pytest.raises(DockerfileError, match=r"no hash for helper-lib .*run `poetry lock`"):
        build_local_wheels(tmp_path, environment_of(unhashed), tmp_path / "x", lambda _: None)


def test_failed_build_requirement_fetch_leaves_no_partial_folder(tmp_path):
    sdist = tmp_path / "broken-1.0.tar.gz"
    data = b'[build-system]\nrequires = ["no-such-distribution-daskbox-images==1"]\n'
    with tarfile.open(sdist, "w:gz") as archive:
        info = tarfile.TarInfo("broken-1.0/pyproject.toml")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    cache = tmp_path / "cache"
    with pytest.raises(DockerfileError, match=r"cannot fetch build requirements no-such"):
        _fetch_build_requirements(
            (Artifact(sdist, file_sha256(sdist)),), environment_of(), cache, lambda _: None
        )
    assert not cache.exists() or list(cache.iterdir()) == []


def test_git_dependencies_are_fetched_once_per_locked_commit(tmp_path):
    """Built once, the wheel of a locked commit is reused with the repository gone (as a
    no-op build or a dry run without network)."""
    repository = tmp_path / "git-lib"
    (repository / "src" / "git_lib").mkdir(parents=True)
    (repository / "pyproject.toml").write_text(
        '[project]\nname = "git-lib"\nversion = "1.0"\n[tool.poetry]\n'
        'packages = [{ include = "git_lib", from = "src" }]\n[build-system]\n'
        'requires = ["poetry-core>=2.0"]\nbuild-backend = "poetry.core.masonry.api"\n'
    )
    (repository / "src" / "git_lib" / "__init__.py").write_text("VALUE = 1\n")
    for args in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "lib"]):
        subprocess.run(
            ["git", "-C", str(repository), "-c", "user.name=t", "-c", "user.email=t@t", *args],
            check=True,
        )
    commit = subprocess.run(
        ["git", "-C", str(repository), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    locked = environment_of(
        Requirement("git-lib", None, Source.VCS, url=f"git+file://{repository}@{commit}")
    )
    messages: list[str] = []
    (first,) = build_local_wheels(tmp_path, locked, tmp_path / "wheels", messages.append)
    assert any("fetching git-lib" in m for m in messages)
    (repository / ".git").rename(tmp_path / "moved-away")  # the remote is unreachable now
    messages.clear()
    (again,) = build_local_wheels(tmp_path, locked, tmp_path / "wheels", messages.append)
    assert again == first and messages == []


@pytest.mark.parametrize(
    ("url", "cause"),
    [
        (
            "git+https://git.daskbox.invalid/lib.git",
            r"Could not resolve host: git\.daskbox\.invalid",
        ),
        ("git+http://127.0.0.1:9/lib.git", r"Failed to connect to 127\.0\.0\.1 port 9"),
    ],
)
def test_an_unreachable_git_dependency_is_one_line_with_the_real_cause(tmp_path, url, cause):
    locked = environment_of(Requirement("git-lib", None, Source.VCS, url=f"{url}@{'a' * 40}"))
    with pytest.raises(DockerfileError) as failed:
        build_local_wheels(tmp_path, locked, tmp_path / "wheels", lambda _: None)
    message = str(failed.value)
    assert re.match(rf"cannot fetch git-lib from {re.escape(url)}@a+: .*{cause}", message)
    assert message.endswith("(each locked commit is fetched once, then cached)")
    assert "\n" not in message and "note:" not in message


def test_a_missing_package_folder_is_named_with_the_fix(tmp_path):
    project = copy_project("package_mode", tmp_path)
    (project / "src" / "fixture_app" / "__init__.py").unlink()
    (project / "src" / "fixture_app").rmdir()
    environment = replace(environment_of(), package_mode=True)
    with pytest.raises(DockerfileError) as failed:
        build_local_wheels(project, environment, tmp_path / "wheels", lambda _: None)
    assert re.fullmatch(
        r"cannot build the project \(\S+\): the declared package folder is missing \(.*"
        r"fixture_app.*\): create that folder or fix `packages` in \[tool\.poetry\] of its "
        r"pyproject\.toml \(or, for an application that is no package, set package-mode = "
        r"false there\)",
        str(failed.value),
    )


def test_a_failing_dynamic_version_is_reported_with_the_backends_exception(tmp_path):
    """setuptools reads the version from the package at build time, and the attribute is gone."""
    project = tmp_path / "dynamic"
    (project / "dynamic_app").mkdir(parents=True)
    (project / "dynamic_app" / "__init__.py").write_text("# __version__ was removed\n")
    (project / "pyproject.toml").write_text(
        '[project]\nname = "dynamic-app"\ndynamic = ["version"]\n'
        '[tool.setuptools.dynamic]\nversion = { attr = "dynamic_app.__version__" }\n'
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
    )
    environment = replace(environment_of(), package_mode=True)
    with pytest.raises(DockerfileError) as failed:
        build_local_wheels(project, environment, tmp_path / "wheels", lambda _: None)
    message = str(failed.value)
    assert message.startswith(f"cannot build the project ({project}): AttributeError: ")
    assert "__version__" in message and "hint:" not in message and "note:" not in message


def dynamic_version_project(folder: Path) -> Path:
    """The package-mode fixture with poetry-dynamic-versioning's backend, in a git checkout
    tagged v0.2.0: the backend rewrites pyproject.toml while it builds, then restores it
    (moving ``version`` to the end of [tool.poetry])."""
    project = copy_project("package_mode", folder)
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text().replace('version = "0.1.0"\n', 'dynamic = ["version"]\n')
    text = text.replace("[tool.poetry]\n", '[tool.poetry]\nversion = "0.0.0"\n')
    text = text.replace(
        'requires = ["poetry-core>=2.0"]\nbuild-backend = "poetry.core.masonry.api"\n',
        'requires = ["poetry-core>=2.0", "poetry-dynamic-versioning>=1.0.0,<2.0.0"]\n'
        'build-backend = "poetry_dynamic_versioning.backend"\n\n'
        "[tool.poetry-dynamic-versioning]\nenable = true\n",
    )
    pyproject.write_text(text)
    git = ["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "app"], ["tag", "v0.2.0"]):
        subprocess.run([*git, *args], check=True)
    return project


def test_a_dynamic_version_project_is_built_once_and_again_for_a_new_tag(tmp_path):
    project = dynamic_version_project(tmp_path)
    environment = replace(environment_of(), package_mode=True)
    cache = tmp_path / "local-wheels"
    messages: list[str] = []
    (first,) = build_local_wheels(project, environment, cache, messages.append)
    assert first.filename == "fixture_app-0.2.0-py3-none-any.whl"
    assert messages == [f"building a wheel for {project}"]
    # The backend rewrote and restored pyproject.toml: a new modification time, the keys in
    # another order; the wheel was kept under the files as the build left them.
    assert (project / "pyproject.toml").read_text().index("version = ") > (
        (project / "pyproject.toml").read_text().index("packages = ")
    )
    messages.clear()
    (again,) = build_local_wheels(project, environment, cache, messages.append)
    assert messages == [] and again == first
    assert [entry.name for entry in cache.iterdir()] == [first.path.parent.name]
    # The version comes from git: a tagged release is a new wheel, with no file changed.
    git = ["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "release"], check=True)
    subprocess.run([*git, "tag", "v0.3.0"], check=True)
    (tagged,) = build_local_wheels(project, environment, cache, messages.append)
    assert tagged.filename == "fixture_app-0.3.0-py3-none-any.whl"


def test_a_poetry_1_build_backend_names_poetry_core_s():
    """caddy (a real project) requires poetry-core but names poetry.masonry.api."""
    from daskbox.images.wheels import _build_failure

    stderr = "  ModuleNotFoundError: No module named 'poetry.masonry'\nerror: subprocess-exited\n"
    message = _build_failure("the project", "/p", stderr, git=False)
    assert message == (
        "cannot build the project (/p): its build-backend is 'poetry.masonry', which only poetry "
        'itself provides: set build-backend = "poetry.core.masonry.api" in [build-system] of its '
        "pyproject.toml"
    )
