"""The comparison as a pure function over reports (the cluster tests cover the transport)."""

from __future__ import annotations

import importlib.metadata
import platform

import pytest
from packaging.utils import canonicalize_name

from daskbox.client.check import (
    Difference,
    EnvironmentReport,
    LocalEnvironment,
    LockedSides,
    PlatformDifference,
    check_reports,
    compare,
)
from daskbox.entrypoint.environment import environment_report, installed_distributions


def report(python="3.11.7", platform_="Linux-x86_64", lock_hash="a" * 64, **distributions):
    return {
        "python": python,
        "implementation": "CPython",
        "platform": platform_,
        "distributions": distributions,
        "lock_hash": lock_hash,
        "groups": ["main"],
    }


def local(
    locked=("dask", "toolz"),
    lock_hash="a" * 64,
    platform_="Linux-x86_64",
    extras=(),
    sides=None,
    **distributions,
):
    """The local side; ``locked`` names what the lock gives both platforms (at any version),
    ``sides`` replaces it with a LockedSides of its own."""
    if sides is None and locked is not None:
        sides = LockedSides(dict.fromkeys(locked), dict.fromkeys(locked))
    return LocalEnvironment(
        EnvironmentReport.from_dict(report(lock_hash=None, platform_=platform_, **distributions)),
        groups=("main",),
        extras=extras,
        lock_hash=lock_hash,
        locked=sides,
    )


class TestCompare:
    def test_equal_environments_count_every_cluster_package(self):
        here = local(dask="2026.8.0", toolz="1.2.0", pytest="9.0")
        remote = EnvironmentReport.from_dict(report(dask="2026.8.0", toolz="1.2.0"))
        comparison = compare(here, remote, "scheduler")
        assert comparison.differences == ()
        assert comparison.matched == 2
        assert comparison.local_only == ("pytest",)

    def test_version_difference_names_both_versions(self):
        here = local(dask="2026.8.0", toolz="1.2.0")
        remote = EnvironmentReport.from_dict(report(dask="2026.8.0", toolz="1.1.0"))
        assert compare(here, remote, "scheduler").differences == (
            Difference("package", "toolz", "1.2.0", "1.1.0"),
        )

    def test_python_patch_version_difference(self):
        here = local(dask="2026.8.0")
        remote = EnvironmentReport.from_dict(report(python="3.11.2", dask="2026.8.0"))
        assert compare(here, remote, "scheduler").differences == (
            Difference("python", "python", "CPython 3.11.7", "CPython 3.11.2"),
        )

    def test_another_os_and_cpu_alone_is_expected(self):
        here = local(platform_="Darwin-arm64", dask="2026.8.0")
        remote = EnvironmentReport.from_dict(report(dask="2026.8.0"))
        comparison = compare(here, remote, "w")
        assert comparison.differences == ()
        assert comparison.platforms == ("Darwin-arm64", "Linux-x86_64")

    def test_lock_hash_difference(self):
        here = local(lock_hash="b" * 64, dask="1")
        remote = EnvironmentReport.from_dict(report(dask="1"))
        assert compare(here, remote, "w").differences == (
            Difference("lock", "poetry.lock", "sha256:bbbbbbbbbbbb", "sha256:aaaaaaaaaaaa"),
        )

    def test_missing_on_either_side(self):
        # dask: locked for the image groups and installed locally, absent remotely.
        # cloudpickle: on the cluster, not installed locally.
        here = local(dask="2026.8.0", toolz="1.2.0")
        remote = EnvironmentReport.from_dict(report(toolz="1.2.0", cloudpickle="3.1.3"))
        assert set(compare(here, remote, "w").differences) == {
            Difference("package", "dask", "2026.8.0", None),
            Difference("package", "cloudpickle", None, "3.1.3"),
        }

    def test_names_and_versions_are_canonicalized(self):
        here = local(locked=("pyyaml",), PyYAML="6.0")
        remote = EnvironmentReport.from_dict(report(pyyaml="6.0.0"))
        comparison = compare(here, remote, "w")
        assert comparison.differences == ()
        assert comparison.matched == 1

    def test_without_the_lock_export_local_extras_are_local_only(self):
        here = local(locked=None, pandas="2", toolz="1")
        remote = EnvironmentReport.from_dict(report(toolz="1"))
        comparison = compare(here, remote, "w")
        assert comparison.differences == ()
        assert comparison.local_only == ("pandas",)


# What a lock with platform markers gives a macOS laptop and the Linux image.
MAC_AND_LINUX = LockedSides(
    local={"dask": "1", "toolz": "1", "appdirs": "1.4.4", "tabulate": "0.8.10"},
    image={"dask": "1", "toolz": "1", "six": "1.17.0", "tabulate": "0.10.0"},
)


def mac(**distributions):
    return local(sides=MAC_AND_LINUX, platform_="Darwin-arm64", **distributions)


class TestPlatforms:
    def test_what_the_lock_gives_each_platform_alone_is_expected(self):
        here = mac(dask="1", toolz="1", appdirs="1.4.4", tabulate="0.8.10", pytest="9")
        remote = EnvironmentReport.from_dict(
            report(dask="1", toolz="1", six="1.17.0", tabulate="0.10.0")
        )
        comparison = compare(here, remote, "scheduler")
        assert comparison.differences == ()
        assert comparison.matched == 2
        assert comparison.local_only == ("pytest",)
        assert comparison.platform_only == (
            PlatformDifference("appdirs", "1.4.4", None),
            PlatformDifference("six", None, "1.17.0"),
            PlatformDifference("tabulate", "0.8.10", "0.10.0"),
        )
        assert comparison.platforms == ("Darwin-arm64", "Linux-x86_64")

    @pytest.mark.parametrize(
        ("laptop", "cluster", "difference"),
        [
            # tabulate: the lock gives macOS 0.8.10, and this laptop has another version.
            ({"tabulate": "0.9.0"}, {}, Difference("package", "tabulate", "0.9.0", "0.10.0")),
            # dask: the lock gives both platforms one version, so both sides must have it.
            ({}, {"dask": "2"}, Difference("package", "dask", "1", "2")),
        ],
    )
    def test_what_the_lock_does_not_explain_is_a_difference(self, laptop, cluster, difference):
        here = mac(
            **{"dask": "1", "toolz": "1", "appdirs": "1.4.4", "tabulate": "0.8.10", **laptop}
        )
        remote = EnvironmentReport.from_dict(
            report(**{"dask": "1", "toolz": "1", "six": "1.17.0", "tabulate": "0.10.0", **cluster})
        )
        assert compare(here, remote, "w").differences == (difference,)

    def test_the_serialization_set_must_match_whatever_the_lock_says(self):
        split = LockedSides(local={"cloudpickle": "3.0.0"}, image={"cloudpickle": "3.1.3"})
        here = local(sides=split, platform_="Windows-AMD64", cloudpickle="3.0.0")
        result = check_reports(here, {"scheduler": report(cloudpickle="3.1.3")})
        assert [d.subject for d in result.differences] == ["cloudpickle"]
        fixes = [line for line in result.mismatch_message().splitlines() if "fix:" in line]
        assert len(fixes) == 1
        assert fixes[0].startswith("fix: the lock gives cloudpickle another version on each ")
        assert "require one version for every platform in pyproject.toml" in fixes[0]

    def test_a_serialization_package_missing_on_one_side_is_a_difference(self):
        only_image = LockedSides(local={}, image={"tornado": "6.5.10"})
        here = local(sides=only_image, platform_="Darwin-arm64")
        assert compare(
            here, EnvironmentReport.from_dict(report(tornado="6.5.10")), "w"
        ).differences == (Difference("package", "tornado", None, "6.5.10"),)

    def test_confirmation_names_both_platforms_and_the_expected_differences(self):
        here = mac(dask="1", toolz="1", appdirs="1.4.4", tabulate="0.8.10", daskbox="0.1")
        same = report(dask="1", toolz="1", six="1.17.0", tabulate="0.10.0")
        result = check_reports(here, {"scheduler": same, "tls://w1": same})
        assert result.ok
        assert result.confirmation() == (
            "environment check: 2 packages match on scheduler and 1 worker (groups: main); "
            "Darwin-arm64 here, Linux-x86_64 there: 3 expected differences (appdirs here only, "
            "six there only, tabulate 0.8.10 here / 0.10.0 there); local-only: 1 (daskbox)"
        )

    def test_a_mismatch_still_lists_the_expected_differences_apart(self):
        here = mac(dask="1", toolz="2", appdirs="1.4.4", tabulate="0.8.10")
        result = check_reports(
            here, {"scheduler": report(dask="1", toolz="1", six="1.17.0", tabulate="0.10.0")}
        )
        message = result.mismatch_message()
        assert [d.subject for d in result.differences] == ["toolz"]
        assert "expected: Darwin-arm64 here, Linux-x86_64 there: 3 expected differences" in message
        assert "strict=False" not in message


class TestCheckResult:
    def test_identical_differences_are_one_row_naming_every_process(self):
        here = local(dask="2026.8.0", toolz="1.2.0")
        older = report(dask="2026.8.0", toolz="1.1.0")
        result = check_reports(here, {"scheduler": older, "tls://w1": older, "tls://w2": older})
        assert not result.ok
        message = result.mismatch_message()
        rows = [line.split() for line in result.table().splitlines()]
        assert rows == [
            ["package", "local", "cluster", "on"],
            ["toolz", "1.2.0", "1.1.0", "scheduler,", "all", "2", "workers"],
        ]
        assert "invoke build push" in message
        assert "poetry sync" in message  # same lock hash: the local side drifted

    def test_the_sync_fix_names_the_image_groups_and_extras(self):
        """`poetry sync` alone would drop the image's optional groups and extras locally."""
        drifted = local(dask="2026.8.0", toolz="1.2.0")
        older = report(dask="2026.8.0", toolz="1.1.0")
        plain = check_reports(drifted, {"scheduler": older}).mismatch_message()
        assert "fix: run `poetry sync`: the cluster runs" in plain
        groups, extras = ("main", "ml", "reports"), ("plots", "tables")
        here = LocalEnvironment(drifted.report, groups, extras, drifted.lock_hash, drifted.locked)
        message = check_reports(here, {"scheduler": older}).mismatch_message()
        assert 'fix: run `poetry sync --with ml,reports --extras "plots tables"`: the' in message
        split = LockedSides(local={"cloudpickle": "3.0.0"}, image={"cloudpickle": "3.1.3"})
        mine = local(sides=split, cloudpickle="3.0.0").report
        across = LocalEnvironment(mine, ("main", "ml"), ("plots",), drifted.lock_hash, split)
        fixes = check_reports(across, {"scheduler": report(cloudpickle="3.1.3")})
        assert 'run `poetry lock` and `poetry sync --with ml --extras "plots"`, then' in (
            fixes.mismatch_message()
        )

    def test_a_local_drift_names_the_local_fix_first(self):
        """Same lock, the cluster at the lock's versions: only the local side drifted, so
        `poetry sync` is the fix, and the rebuild only the alternative."""
        sides = LockedSides(
            {"dask": "2026.8.0", "toolz": "1.1.0"}, {"dask": "2026.8.0", "toolz": "1.1.0"}
        )
        here = local(sides=sides, dask="2026.8.0", toolz="1.2.0")
        result = check_reports(here, {"scheduler": report(dask="2026.8.0", toolz="1.1.0")})
        fixes = [
            line
            for line in result.mismatch_message().splitlines()
            if line.startswith(("fix:", "     "))
        ]
        assert fixes == [
            "fix: run `poetry sync`: the cluster runs the local poetry.lock, the local "
            "environment has drifted from it",
            "     (to run the local versions on the cluster instead, lock them (`poetry add`, "
            "`poetry lock`), then `invoke build push` and relaunch)",
        ]

    def test_a_cluster_off_its_own_lock_is_rebuilt_first(self):
        """Same lock hash, but the cluster is not at the lock's version: not a local drift."""
        sides = LockedSides({"toolz": "1.2.0"}, {"toolz": "1.2.0"})
        here = local(sides=sides, toolz="1.2.0")
        result = check_reports(here, {"scheduler": report(toolz="1.1.0")})
        fix = next(line for line in result.mismatch_message().splitlines() if "fix:" in line)
        assert fix.startswith("fix: run `invoke build push`, then relaunch")

    def test_lock_difference_comes_before_packages_and_drops_the_sync_hint(self):
        here = local(lock_hash="b" * 64, dask="2026.8.0", toolz="1.2.0")
        result = check_reports(here, {"scheduler": report(dask="2026.8.0", toolz="1.1.0")})
        subjects = [line.split()[0] for line in result.table().splitlines()[1:]]
        assert subjects == ["poetry.lock", "toolz"]
        assert "poetry sync" not in result.mismatch_message()

    def test_confirmation_counts_packages_processes_and_local_only(self):
        here = local(dask="2026.8.0", toolz="1.2.0", pytest="9.0", ruff="0.9", daskbox="0.1.0")
        same = report(dask="2026.8.0", toolz="1.2.0")
        result = check_reports(here, {"scheduler": same, "tls://w1": same, "tls://w2": same})
        assert result.ok
        assert result.confirmation() == (
            "environment check: 2 packages match on scheduler and 2 workers (groups: main); "
            "local-only: 3 (daskbox, pytest, ruff)"
        )

    def test_confirmation_names_the_extras_compared(self):
        here = local(locked=("dask", "tabulate"), extras=("tables",), dask="1", tabulate="0.10")
        result = check_reports(here, {"scheduler": report(dask="1", tabulate="0.10")})
        assert result.ok
        assert "match on scheduler and 0 workers (groups: main; extras: tables);" in (
            result.confirmation()
        )


def test_environment_report_describes_this_interpreter():
    data = environment_report()
    parsed = EnvironmentReport.from_dict(data)
    assert parsed.python == platform.python_version()
    assert parsed.distributions["distributed"] == __import__("distributed").__version__
    assert parsed.distributions["daskbox"]  # installed here (editable), never in the image


def test_the_fast_metadata_read_agrees_with_the_full_parser():
    full: dict[str, str] = {}
    for distribution in importlib.metadata.distributions():
        full.setdefault(canonicalize_name(distribution.metadata["Name"]), distribution.version)
    assert installed_distributions() == dict(sorted(full.items()))
    assert len(full) > 50  # this interpreter's whole environment, dev group included


def test_the_scan_is_kept_until_a_distribution_is_installed_or_removed(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(tmp_path))
    before = installed_distributions()
    assert "daskbox-fixture-pkg" not in before

    scans = []
    real_distributions = importlib.metadata.distributions
    monkeypatch.setattr(
        importlib.metadata, "distributions", lambda: scans.append(1) or real_distributions()
    )
    assert installed_distributions() == before
    assert scans == []  # nothing on sys.path changed: no second scan

    installed = tmp_path / "daskbox_fixture_pkg-1.2.dist-info"
    installed.mkdir()
    (installed / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: daskbox-fixture-pkg\nVersion: 1.2\n"
    )
    assert installed_distributions()["daskbox-fixture-pkg"] == "1.2"
    assert scans == [1]

    (installed / "METADATA").unlink()
    installed.rmdir()
    assert "daskbox-fixture-pkg" not in installed_distributions()


@pytest.mark.parametrize("groups", ["main", "main, gpu", ""])
def test_environment_report_reads_the_image_variables(monkeypatch, groups):
    monkeypatch.setenv("DASKBOX_LOCK_HASH", "c" * 64)
    monkeypatch.setenv("DASKBOX_GROUPS", groups)
    data = environment_report()
    assert data["lock_hash"] == "c" * 64
    assert data["groups"] == [g.strip() for g in groups.split(",") if g.strip()]


class TestWorkersPerVM:
    def test_workers_on_several_vms_are_counted_per_vm(self):
        here = local(dask="1", toolz="1")
        on = {
            "scheduler": {**report(dask="1", toolz="1"), "node": "box"},
            "tls://a:1": {**report(dask="1", toolz="1"), "node": "box"},
            "tls://b:1": {**report(dask="1", toolz="1"), "node": "box-w-ab12"},
            "tls://b:2": {**report(dask="1", toolz="1"), "node": "box-w-ab12"},
        }
        result = check_reports(here, on)
        assert result.workers_per_node() == {"box": 1, "box-w-ab12": 2}
        assert "on scheduler and 3 workers on 2 VMs (box: 1, box-w-ab12: 2)" in (
            result.confirmation()
        )
        drifted = check_reports(here, {**on, "tls://b:2": {**on["tls://b:2"], "toolz": "2"}})
        assert "checked: scheduler and 3 workers on 2 VMs" in drifted.mismatch_message()

    def test_one_vm_or_an_older_image_reads_as_before(self):
        here = local(dask="1", toolz="1")
        one_vm = {
            name: {**report(dask="1", toolz="1"), "node": "box"}
            for name in ("scheduler", "tls://a:1", "tls://a:2")
        }
        assert "workers (groups: main)" in check_reports(here, one_vm).confirmation()
        older = {"scheduler": report(dask="1", toolz="1"), "tls://a:1": report(dask="1", toolz="1")}
        assert check_reports(here, older).workers_per_node() == {}
