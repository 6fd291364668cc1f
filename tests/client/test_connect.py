"""connect() against real Dask processes over TLS, each from an image-like environment."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import time
from pathlib import Path

import pytest

from client.client_clusters import (
    FIXTURE_PROJECTS,
    ImageLikeEnvironment,
    build_environment,
    copy_project,
)
from client.conftest import (
    CHANGED_PACKAGE,
    OTHER_PATCH_PYTHON,
    OTHER_RELEASE,
    connect_in_a_session,
    synced_site,
    table_rows,
)
from daskbox import EnvironmentMismatch, connect
from daskbox.client.connection import (
    ConnectionFile,
    read_connection_file,
    write_connection_file,
)
from daskbox.errors import ClusterUnreachable, ConnectionFileError, EnvironmentMismatchWarning
from daskbox.images.environment import Platform
from daskbox.images.lock import export_environment
from daskbox_services import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

DASKBOX_CLI = Path(sys.executable).parent / "daskbox"
# Its extra "tables" adds tabulate to the main group (and six is locked for Linux only).
WITH_EXTRAS = FIXTURE_PROJECTS / "extras_groups_markers"


def wait_until(predicate, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_matching_environment_connects_and_reports_the_count(
    project, current_environment, tls_cluster, capsys
):
    _, path = tls_cluster(current_environment, workers=2)
    client = connect(path=path)
    try:
        locked = export_environment(project, Platform.local(), ("main",)).names()
        check_line, dashboard_line = capsys.readouterr().out.strip().splitlines()[-2:]
        assert dashboard_line == f"dashboard: {client.dashboard_link}"
        line = check_line
        assert line.startswith(
            f"environment check: {len(locked)} packages match on scheduler and 2 workers "
            "(groups: main); local-only: "
        )
        result = client.daskbox_environment
        assert result.ok
        # Everything local outside the image's groups is named as local-only, daskbox included.
        installed = {dist.metadata["Name"].lower() for dist in importlib.metadata.distributions()}
        assert {"daskbox", "pytest", "ruff"} <= set(result.local_only)
        assert len(result.local_only) == len(installed) - len(locked)
        assert client.submit(sum, [1, 2, 3]).result() == 6
    finally:
        client.close()


def test_connect_finds_the_instance_from_inside_the_project(
    project, current_environment, tls_cluster, monkeypatch
):
    cluster, _ = tls_cluster(current_environment, workers=1)
    subfolder = project / "notebooks"
    subfolder.mkdir(exist_ok=True)
    monkeypatch.chdir(subfolder)
    with connect(cluster.name) as client:
        assert client.scheduler_info()["address"] == cluster.address


def test_older_lock_raises_naming_exactly_the_changed_package(older_environment, tls_cluster):
    _, path = tls_cluster(older_environment, workers=2)
    with pytest.raises(EnvironmentMismatch) as raised:
        connect(path=path)
    message = str(raised.value)
    local_version = importlib.metadata.version(CHANGED_PACKAGE)
    rows = table_rows(message)
    assert [row[0] for row in rows] == ["poetry.lock", CHANGED_PACKAGE]
    assert rows[1] == [CHANGED_PACKAGE, local_version, OTHER_RELEASE, "scheduler, all 2 workers"]
    assert "invoke build push" in message


def test_older_lock_with_strict_false_warns_and_connects(older_environment, tls_cluster):
    _, path = tls_cluster(older_environment, workers=1)
    with pytest.warns(EnvironmentMismatchWarning, match=CHANGED_PACKAGE):
        client = connect(path=path, strict=False)
    try:
        assert not client.daskbox_environment.ok
        assert client.submit(sum, [1, 2]).result() == 3
    finally:
        client.close()


def test_worker_joining_later_with_another_environment_is_reported(
    current_environment, older_environment, tls_cluster
):
    cluster, path = tls_cluster(current_environment, workers=1)
    client = connect(path=path)
    try:
        with pytest.warns(EnvironmentMismatchWarning, match="joined with a different environment"):
            cluster.start_workers(current_environment, 1, "late-same")
            client.wait_for_workers(2, timeout=60)
            cluster.start_workers(older_environment, 1, "late-older")
            wait_until(lambda: client.daskbox_mismatches, "the late worker's report")
        (mismatch,) = client.daskbox_mismatches
        (comparison,) = mismatch.comparisons
        assert comparison.where in client.scheduler_info()["workers"]
        assert "late-older" in client.scheduler_info()["workers"][comparison.where]["name"]
        assert [row[0] for row in table_rows(mismatch.mismatch_message())] == [
            "poetry.lock",
            CHANGED_PACKAGE,
        ]
    finally:
        client.close()


def test_python_patch_version_difference_is_reported(other_patch_environment, tls_cluster):
    _, path = tls_cluster(other_patch_environment, workers=1)
    remote_python = subprocess.run(
        [OTHER_PATCH_PYTHON, "-c", "import platform; print(platform.python_version())"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    with pytest.raises(EnvironmentMismatch) as raised:
        connect(path=path)
    rows = table_rows(str(raised.value))
    local_python = f"CPython {sys.version.split()[0]}"
    assert rows == [
        [
            "python",
            local_python,
            f"CPython {remote_python}",
            "scheduler, worker " + rows[0][3].split("worker ", 1)[1],
        ]
    ]


def test_check_task_exits_0_on_match_and_1_on_mismatch(
    current_environment, older_environment, tls_cluster
):
    _, matching = tls_cluster(current_environment, workers=1)
    _, older = tls_cluster(older_environment, workers=1)
    ok = subprocess.run(
        [DASKBOX_CLI, "check", "--path", str(matching)], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("environment check: ")
    bad = subprocess.run(
        [DASKBOX_CLI, "check", "--path", str(older)], capture_output=True, text=True
    )
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: the cluster's environment differs from the local one")
    assert [row[0] for row in table_rows(bad.stderr)] == ["poetry.lock", CHANGED_PACKAGE]
    assert "Traceback" not in bad.stderr


def test_unreachable_scheduler_is_one_line_error(project, tls_material, tmp_path):
    connection = ConnectionFile(
        instance="client-gone",
        target="local",
        scheduler_address=f"tls://127.0.0.1:{free_port()}",
        dashboard_url="",
        image="x",
        lock_hash="0" * 64,
        groups=("main",),
        tls=tls_material.client,
    )
    path = write_connection_file(tmp_path / ".daskbox" / "client-gone.json", connection)
    with pytest.raises(ClusterUnreachable, match="is it running"):
        connect(path=path, timeout=2)


def test_unfinished_launch_is_refused_before_connecting(tmp_path):
    # launch writes the file as soon as the VM exists, before it has an address.
    connection = ConnectionFile(
        instance="client-pending",
        target="gce",
        scheduler_address="",
        dashboard_url="",
        image="x",
        lock_hash="0" * 64,
        groups=("main",),
        tls=None,
    )
    path = write_connection_file(tmp_path / "client-pending.json", connection)
    with pytest.raises(ClusterUnreachable, match=r"did not finish.*invoke teardown"):
        connect(path=path)


def test_tls_address_without_certificates_is_refused(tmp_path):
    connection = ConnectionFile(
        instance="client-notls",
        target="local",
        scheduler_address="tls://127.0.0.1:1",
        dashboard_url="",
        image="x",
        lock_hash="0" * 64,
        groups=("main",),
        tls=None,
    )
    path = write_connection_file(tmp_path / "client-notls.json", connection)
    with pytest.raises(ConnectionFileError, match="relaunch"):
        connect(path=path)


def test_cluster_that_cannot_report_is_not_a_daskbox_image(
    current_environment, tls_cluster, tmp_path
):
    # The same venv, but without the entrypoint package the image carries on PYTHONPATH.
    bare = ImageLikeEnvironment(
        tmp_path / "bare", current_environment.python, current_environment.record
    )
    _, path = tls_cluster(bare, workers=1)
    with pytest.raises(EnvironmentMismatch, match="does not run a daskbox image"):
        connect(path=path)


def test_an_extra_installed_in_the_image_matches_a_local_session_that_has_it(tls_cluster, tmp_path):
    project = copy_project(WITH_EXTRAS, tmp_path / "with-extras")
    image = build_environment(tmp_path / "env", project, sys.executable, extras=("tables",))
    _, path = tls_cluster(image, workers=1, in_project=project)
    assert read_connection_file(path).extras == ("tables",)
    exported = export_environment(project, Platform.local(), ("main",), ("tables",))
    assert "tabulate" in exported.names()
    # The local session: this interpreter plus the locked packages it lacks (tabulate, six).
    site = synced_site(image.record, tmp_path / "site")
    assert list(site.glob("tabulate-*.dist-info"))
    confirmation = (
        f"environment check: {len(exported.names())} packages match on scheduler and 1 worker "
        "(groups: main; extras: tables); local-only: "
    )
    matched = connect_in_a_session(path, site)
    assert matched.returncode == 0, matched.stderr
    assert matched.stdout.startswith(confirmation) and "note:" not in matched.stdout
