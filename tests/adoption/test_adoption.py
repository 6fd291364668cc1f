"""The README's ``poetry add`` adopts daskbox in real projects, and adds little to their lock.

Four data-science projects whose Python ranges start below, at and above daskbox's floor
(3.10), with and without an upper cap, each with a committed lock. The README's command runs
through the real ``poetry`` CLI against PyPI, with daskbox's wheel built from this checkout
and served on loopback (tests/adoption/local_index.py).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from adoption.adopt import (
    FIXTURES,
    README_ADD_COMMAND,
    README_ADD_DISTRIBUTED,
    Adoption,
    PoetryFailed,
    adopt,
    declared_python,
    poetry_environ,
    run_poetry,
)
from adoption.local_index import REPO_ROOT, LocalIndex, serving_daskbox_index

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

pytestmark = pytest.mark.slow  # resolves against PyPI: about 10 s per project

MAX_ADDED_PACKAGES = 10
DASKBOX_MARKER = 'python_version >= "3.10"'


@dataclass(frozen=True)
class Case:
    fixture: str
    python: str  # the project's range, as its pyproject.toml writes it
    locked_daskbox_markers: str | None  # None: the range already implies daskbox's floor


CASES = [
    Case("py39_uncapped", ">=3.9", DASKBOX_MARKER),
    Case("py310_caret", "^3.10", None),
    Case("py310_to_312", ">=3.10,<3.13", None),
    Case("py311_uncapped", ">=3.11", None),
]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalIndex]:
    with serving_daskbox_index(tmp_path_factory.mktemp("daskbox-index")) as running:
        yield running


@pytest.fixture(scope="module")
def environ(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return poetry_environ(tmp_path_factory.mktemp("poetry-home"))


@pytest.fixture(scope="module", params=CASES, ids=[case.fixture for case in CASES])
def adopted(
    request: pytest.FixtureRequest,
    index: LocalIndex,
    environ: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Case, Adoption]:
    """One adoption per fixture project, shared by the tests below."""
    case: Case = request.param
    assert declared_python(FIXTURES / case.fixture) == case.python
    # The committed lock must be current, or "before" would not be the project's real lock.
    run_poetry(["check", "--lock"], FIXTURES / case.fixture, environ)
    scratch = tmp_path_factory.mktemp("adopted")
    return case, adopt(case.fixture, scratch / case.fixture, index, environ)


def test_the_readme_shows_the_tested_command():
    readme = (REPO_ROOT / "README.md").read_text()
    # (The second one wraps in the README's prose.)
    assert README_ADD_COMMAND in readme
    assert README_ADD_DISTRIBUTED.replace(" ", "") in readme.replace(" ", "").replace("\n", "")


def test_the_lock_is_valid(adopted, environ):
    _, adoption = adopted
    run_poetry(["check", "--lock"], adoption.project, environ)  # raises on a stale/invalid lock


def test_daskbox_is_this_wheel_in_the_dev_group_behind_the_marker(adopted, index):
    case, adoption = adopted
    pyproject = tomllib.loads((adoption.project / "pyproject.toml").read_text())
    requirement = pyproject["tool"]["poetry"]["group"]["dev"]["dependencies"]["daskbox"]
    assert requirement["markers"] == DASKBOX_MARKER

    (daskbox,) = adoption.locked("daskbox")
    assert daskbox.version == index.wheel.version
    assert daskbox.hashes == {f"sha256:{index.wheel.sha256}"}
    assert daskbox.groups == {"dev"}
    assert daskbox.markers == case.locked_daskbox_markers


def test_no_main_group_version_moves(adopted):
    _, adoption = adopted
    assert adoption.changed_main_group == {}


def test_at_most_ten_packages_are_added(adopted):
    _, adoption = adopted
    assert len(adoption.added_names) <= MAX_ADDED_PACKAGES, adoption.added_names


def test_without_the_marker_poetry_refuses_a_range_below_daskbox_floor(index, environ, tmp_path):
    # Why the README's command carries the marker: the plain form fails on a >=3.9 project.
    with pytest.raises(PoetryFailed) as failure:
        adopt(
            "py39_uncapped",
            tmp_path / "project",
            index,
            environ,
            command="poetry add --group dev daskbox",
        )
    assert f"daskbox ({index.wheel.version}) requires Python >=3.10" in failure.value.output


def without_distributed(project: Path) -> None:
    """A >=3.9 project that does not use Dask yet: distributed is not in its main group."""
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    assert '    "distributed (>=2023.6)",\n' in text
    pyproject.write_text(text.replace('    "distributed (>=2023.6)",\n', ""))


def test_on_a_range_below_3_10_distributed_is_added_with_the_readme_marker(
    index, environ, tmp_path
):
    project, prepare = "py39_uncapped", without_distributed
    with pytest.raises(PoetryFailed) as failure:
        adopt(project, tmp_path / "plain", index, environ, "poetry add distributed", prepare)
    assert "requires Python >=3.10" in failure.value.output
    adoption = adopt(project, tmp_path / "marked", index, environ, README_ADD_DISTRIBUTED, prepare)
    # One entry, behind the marker: no distributed is locked for Python 3.9.
    (distributed,) = adoption.locked("distributed")
    assert distributed.markers == DASKBOX_MARKER and distributed.groups == {"main"}


def optional_dev_group(project: Path) -> None:
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    dev = "[tool.poetry.group.dev.dependencies]\n"
    assert dev in text
    pyproject.write_text(text.replace(dev, "[tool.poetry.group.dev]\noptional = true\n\n" + dev))


def test_with_an_optional_dev_group_daskbox_is_installed_with_the_readme_flag(
    index, environ, tmp_path
):
    project = tmp_path / "project"
    adoption = adopt("py310_caret", project, index, environ, prepare=optional_dev_group)
    plain = run_poetry(["install", "--dry-run"], adoption.project, environ)
    assert "Installing pandas" in plain and "daskbox" not in plain  # `invoke` would find none
    readme = (REPO_ROOT / "README.md").read_text()
    assert "`poetry install --with dev`" in readme
    flagged = run_poetry(["install", "--with", "dev", "--dry-run"], adoption.project, environ)
    assert "Installing daskbox" in flagged
