"""The cross-platform check against a real Linux cluster built from a lock with platform
markers (tests/fixtures/projects/platform_markers: a darwin-only, a linux-only and a
win32-only dependency, and tabulate locked at another version for Linux).

This host's real environment connects through ``connect()`` itself. A macOS arm64 and a
Windows laptop cannot run here, so their side is what ``environment_report()`` and
``packaging``'s marker environment say there after installing the same lock: the lock's
export evaluated for that platform (by the record launch hands over), plus the dev tools
every laptop has. Everything else (the cluster, its reports, the comparison, the message)
is the real thing.
"""

from __future__ import annotations

import importlib.metadata
import platform
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed.versions import VersionMismatchWarning
from packaging.markers import default_environment

from client.client_clusters import (
    FIXTURE_PROJECTS,
    ImageLikeEnvironment,
    build_environment,
    copy_project,
)
from client.conftest import connect_in_a_session, synced_site, table_rows
from daskbox import EnvironmentMismatch, connect
from daskbox.client.check import EnvironmentReport, PlatformDifference
from daskbox.client.connect import DaskboxClient, check_environment
from daskbox.client.connection import read_connection_file
from daskbox.client.local import local_environment
from daskbox.record import ImageRecord

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

PLATFORM_MARKERS = FIXTURE_PROJECTS / "platform_markers"
DEV_TOOLS = ("daskbox", "pytest")  # local-only on every laptop: the dev group


def marker_values(system: str, sys_platform: str, machine: str, os_name: str) -> dict[str, str]:
    """PEP 508 values on a laptop of that OS and CPU running this interpreter's Python."""
    values = {key: str(value) for key, value in default_environment().items()}
    values.update(
        platform_system=system,
        sys_platform=sys_platform,
        platform_machine=machine,
        os_name=os_name,
        platform_release="",
        platform_version="",
    )
    return values


MAC = marker_values("Darwin", "darwin", "arm64", "posix")
WINDOWS = marker_values("Windows", "win32", "AMD64", "nt")
LAPTOPS = {"Darwin-arm64": MAC, "Windows-AMD64": WINDOWS}


def laptop_report(record: ImageRecord, markers: dict[str, str], name: str) -> EnvironmentReport:
    """``environment_report()`` on that laptop after ``poetry sync`` of the same lock."""
    installed = {
        package: str(version) for package, version in record.distributions_for(markers).items()
    }
    installed |= {tool: importlib.metadata.version(tool) for tool in DEV_TOOLS}
    return EnvironmentReport(
        python=platform.python_version(),
        implementation=platform.python_implementation(),
        platform=name,
        distributions=installed,
    )


@pytest.fixture(scope="module")
def platform_project(tmp_path_factory) -> Path:
    return copy_project(PLATFORM_MARKERS, tmp_path_factory.mktemp("platform-project"))


@pytest.fixture(scope="module")
def platform_image(platform_project, tmp_path_factory) -> ImageLikeEnvironment:
    """The Linux image of the fixture lock (main group)."""
    return build_environment(
        tmp_path_factory.mktemp("env-platforms"), platform_project, sys.executable
    )


@pytest.fixture
def linux_cluster(platform_project, platform_image, tls_cluster) -> Iterator[Path]:
    _, path = tls_cluster(platform_image, workers=2, in_project=platform_project)
    yield path


@pytest.fixture
def client(linux_cluster) -> Iterator[DaskboxClient]:
    with warnings.catch_warnings():
        # distributed's own partial check (numpy is in this interpreter, not the image).
        warnings.simplefilter("ignore", VersionMismatchWarning)
        client = connect(path=linux_cluster, check=False)
    with client:
        yield client


def test_the_image_has_what_the_lock_gives_linux(platform_image):
    installed = {name for name in platform_image.record.image_distributions}
    assert {"six", "tabulate"} <= installed
    assert not {"appdirs", "colorama"} & installed
    assert platform_image.record.image_distributions["tabulate"] == "0.10.0"


@pytest.mark.parametrize("laptop", sorted(LAPTOPS))
def test_a_laptop_synced_from_the_same_lock_passes_the_strict_check(
    laptop, client, linux_cluster, platform_project, capsys
):
    connection = read_connection_file(linux_cluster)
    record = connection.record
    markers = LAPTOPS[laptop]
    local = local_environment(
        platform_project,
        connection,
        report=laptop_report(record, markers, laptop),
        markers=markers,
    )
    result = check_environment(client, local, strict=True)
    assert result is not None and result.ok
    only_there = {"appdirs": "darwin", "colorama": "win32"}
    here_only = next(name for name, where in only_there.items() if where == markers["sys_platform"])
    assert result.platform_only == (
        PlatformDifference(here_only, record.distributions_for(markers)[here_only], None),
        PlatformDifference("six", None, "1.17.0"),
        PlatformDifference("tabulate", "0.8.10", "0.10.0"),
    )
    assert result.platforms == (laptop, f"{platform.system()}-{platform.machine()}")
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert f"; {laptop} here, {result.platforms[1]} there: 3 expected differences (" in line
    assert line.startswith("environment check: ") and "local-only: 2 (daskbox, pytest)" in line


@pytest.mark.parametrize("laptop", sorted(LAPTOPS))
def test_a_real_mismatch_on_a_laptop_still_fails(laptop, client, linux_cluster, platform_project):
    connection = read_connection_file(linux_cluster)
    markers = LAPTOPS[laptop]
    synced = laptop_report(connection.record, markers, laptop)
    # The laptop's msgpack and locket are not the lock's (no `poetry sync` after an update).
    drifted = EnvironmentReport(
        synced.python,
        synced.implementation,
        synced.platform,
        {**synced.distributions, "msgpack": "1.0.0", "locket": "0.2.0"},
    )
    local = local_environment(platform_project, connection, report=drifted, markers=markers)
    with pytest.raises(EnvironmentMismatch) as raised:
        check_environment(client, local, strict=True)
    message = str(raised.value)
    assert [row[0] for row in table_rows(message)] == ["locket", "msgpack"]
    assert "poetry sync" in message
    assert f"expected: {laptop} here" in message


def test_this_hosts_environment_synced_from_the_lock_connects(
    linux_cluster, platform_image, tmp_path
):
    """``connect()`` itself, from this interpreter plus the lock's packages it lacks."""
    site = synced_site(platform_image.record, tmp_path / "site")
    result = connect_in_a_session(linux_cluster, site)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("environment check: ")
    assert "expected difference" not in result.stdout  # same platform: nothing to explain
