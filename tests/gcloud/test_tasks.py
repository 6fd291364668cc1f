"""The tasks as a collection: names, help for every flag, imperative docstrings, --list."""

from __future__ import annotations

import inspect
import re
import subprocess

import pytest

from conftest import DASKBOX
from daskbox.gcloud.tasks import launch, scale, status, teardown

# Drives invoke, poetry or gcloud: with the full suite, not the quick in-process runs.
pytestmark = pytest.mark.cli


def _options(help_text: str) -> dict[str, str]:
    """``--flag`` -> its help text, from invoke's ``--help TASK`` output."""
    options: dict[str, str] = {}
    flag = None
    for line in help_text.split("Options:", 1)[1].splitlines():
        match = re.match(r"\s+(?:-\w(?: \w+)?, )?--([\w-]+)(?:=\w+)?\s+(.*)", line)
        if match:
            flag = match[1]
            options[flag] = match[2].strip()
        elif flag and line.strip():
            options[flag] += " " + line.strip()
    return options


@pytest.mark.parametrize("task", [launch, scale, status, teardown], ids=lambda t: t.name)
def test_every_flag_has_help(task, tmp_path):
    """What a user sees: every parameter is a flag with a help text in `--help TASK`."""
    shown = subprocess.run(
        [str(DASKBOX), "--help", task.name], cwd=tmp_path, capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr
    options = _options(shown.stdout)
    parameters = [name for name in inspect.signature(task.body).parameters if name != "c"]
    assert sorted(options) == sorted(name.replace("_", "-") for name in parameters)
    assert all(options.values()), options


@pytest.mark.parametrize("task", [launch, scale, teardown], ids=lambda t: t.name)
def test_mutating_tasks_take_dry_run(task):
    assert "dry_run" in inspect.signature(task.body).parameters


def test_list_shows_the_three_tasks(tmp_path):
    listed = subprocess.run([str(DASKBOX), "--list"], cwd=tmp_path, capture_output=True, text=True)
    for line in (
        "launch     Launch the cluster on a Compute Engine VM",
        "status     List daskbox clusters",
        "teardown   Delete the cluster",
    ):
        assert line.split()[0] in listed.stdout
        assert " ".join(line.split()[1:]) in " ".join(listed.stdout.split())


def test_status_without_gcloud_lists_local_clusters(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    result = subprocess.run(
        [str(DASKBOX), "status"],
        cwd=tmp_path,
        env={"PATH": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "gcloud is not installed: listing local clusters only" in result.stdout


def test_scale_needs_a_cluster_with_worker_vms(tmp_path):
    """One line naming the fix: a cluster launched without worker VMs has no group."""
    from daskbox.client.connection import ConnectionFile, connection_path, write_connection_file

    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    path = connection_path(tmp_path, "daskbox-x")
    path.parent.mkdir()
    write_connection_file(
        path,
        ConnectionFile(
            instance="daskbox-x",
            target="gce",
            scheduler_address="tls://192.0.2.1:8786",
            dashboard_url="",
            image="img",
            lock_hash="",
            groups=("main",),
            tls=None,
            project="p",
            zone="us-central1-a",
        ),
    )
    refused = subprocess.run(
        [str(DASKBOX), "scale", "2"], cwd=tmp_path, capture_output=True, text=True
    )
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == (
        "error: daskbox-x was launched without worker VMs: relaunch it with `invoke launch "
        "--worker-vms N` (after `invoke teardown`)"
    )
    path.write_text(path.read_text().replace('"extra": {}', '"extra": {"worker_group": "g"}'))
    planned = subprocess.run(
        [str(DASKBOX), "scale", "0", "--dry-run"], cwd=tmp_path, capture_output=True, text=True
    )
    assert planned.returncode == 0, planned.stderr
    assert planned.stdout.strip() == (
        "$ gcloud compute instance-groups managed resize g --project p --zone us-central1-a "
        "--size 0 --format json"
    )
    too_many = subprocess.run(
        [str(DASKBOX), "scale", "2001"], cwd=tmp_path, capture_output=True, text=True
    )
    assert "expected 0 to 2000" in too_many.stderr


def test_worker_flags_are_refused_for_the_local_target(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    refused = subprocess.run(
        [str(DASKBOX), "launch", "--local", "--worker-vms", "2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 1
    assert "for Compute Engine: the local target runs one container" in refused.stderr


PINNED = "us-central1-docker.pkg.dev/acme/daskbox/demo@sha256:" + "ab" * 32


@pytest.mark.parametrize("target", [(), ("--local",)], ids=["vm", "local"])
def test_a_long_project_name_gives_a_valid_default_instance(tmp_path, target):
    """``daskbox-<project>`` for a 40-character project name is 48 characters: a valid
    instance name, planned on both targets (it crashed in the certificate's common name)."""
    (tmp_path / "pyproject.toml").write_text(f'[project]\nname = "{"p" * 40}"\n')
    planned = subprocess.run(
        [
            str(DASKBOX),
            "launch",
            "--dry-run",
            "--image",
            PINNED,
            "--project",
            "acme-prod",
            "--source-range",
            "203.0.113.7/32",
            *target,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert planned.returncode == 0, planned.stderr
    assert f"daskbox-{'p' * 40}" in planned.stdout


def test_launch_without_gcloud_leaves_no_record(tmp_path):
    """Nothing was created, so nothing is recorded: the next launch is not refused."""
    from daskbox.client.connection import connection_dir

    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    for _ in range(2):
        refused = subprocess.run(
            [
                str(DASKBOX),
                "launch",
                "--image",
                PINNED,
                "--project",
                "acme-prod",
                "--source-range",
                "203.0.113.7/32",
            ],
            cwd=tmp_path,
            env={"PATH": str(tmp_path)},
            capture_output=True,
            text=True,
        )
        assert refused.returncode == 1
        assert refused.stderr.strip().splitlines() == [
            "error: gcloud is not installed (not on PATH): install the Google Cloud CLI, "
            "https://cloud.google.com/sdk/docs/install, or use `invoke launch --local`"
        ]
        assert not list(connection_dir(tmp_path).glob("*.json"))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--project", "Test-Project"), "error: project 'Test-Project' is not a project id: "),
        (
            ("--project", "acme-prod", "--boot-disk-size", "0"),
            "error: boot-disk-size 0 is invalid: expected 10 to 65536",
        ),
    ],
)
def test_project_id_and_disk_size_are_refused_before_gcloud(tmp_path, flags, message):
    """Refused in one line before any gcloud command (a PATH without gcloud would say so)."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    refused = subprocess.run(
        [str(DASKBOX), "launch", "--image", PINNED, "--source-range", "203.0.113.7/32", *flags],
        cwd=tmp_path,
        env={"PATH": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 1
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith(message)


def test_a_bug_before_anything_was_created_leaves_no_record(tmp_path, monkeypatch):
    """The same cleanup for a bug as for a known failure: a launch that asked gcloud for
    nothing yet removes its record (here the user-data rendering fails)."""
    from specs import fixed_spec

    from daskbox.client.connection import connection_path
    from daskbox.gcloud import launch as gce
    from daskbox.gcloud.settings import LaunchSettings
    from daskbox.gcloud.tls import make_launch_tls

    fake = tmp_path / "bin" / "gcloud"  # answers the machine type's catalogue entry only
    fake.parent.mkdir()
    catalogue = '{"guestCpus": 16, "memoryMb": 16384}'
    fake.write_text(f"#!/bin/sh\n[ \"$3\" = describe ] && echo '{catalogue}'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake.parent))

    def broken(spec: object) -> str:
        raise ZeroDivisionError("a bug in the user-data")

    monkeypatch.setattr(gce, "render_user_data", broken)
    spec = fixed_spec()
    with pytest.raises(ZeroDivisionError):
        gce.launch_gce(
            tmp_path,
            LaunchSettings(instance=spec.instance),
            spec,
            make_launch_tls(spec.instance),
            echo=lambda line: None,
        )
    assert not connection_path(tmp_path, spec.instance).exists()


def _as_typed(value: object) -> str:
    """A setting's default as a user writes it: 600 (not 600.0), a,b, false."""
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def _launch_help(tmp_path) -> str:
    """`invoke --help launch` from the real invoke CLI, in a project whose tasks.py is
    daskbox's two lines."""
    (tmp_path / "tasks.py").write_text("from daskbox.tasks import ns  # noqa: F401\n")
    shown = subprocess.run(
        [str(DASKBOX.parent / "invoke"), "--help", "launch"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0, shown.stderr
    return shown.stdout


def test_launch_groups_every_flag_exactly_once(tmp_path):
    """The docstring's groups cannot drift from the flags: each flag in exactly one."""
    from daskbox.gcloud.tasks import LAUNCH_GROUPS

    grouped = [flag for flags in LAUNCH_GROUPS.values() for flag in flags.split()]
    parameters = [name for name in inspect.signature(launch.body).parameters if name != "c"]
    assert sorted(grouped) == sorted(name.replace("_", "-") for name in parameters)
    shown = _launch_help(tmp_path).split("Options:")[0]
    for title, flags in LAUNCH_GROUPS.items():
        assert f"{title}:" in shown
        for flag in flags.split():
            assert re.search(rf"--{flag}(\s|$)", shown), flag


def test_launch_help_shows_the_settings_defaults(tmp_path):
    """Every default the help states is LaunchSettings's own (one source)."""
    from dataclasses import MISSING, fields

    from daskbox.gcloud.settings import LaunchSettings

    options = _options(_launch_help(tmp_path))
    flag_of = {"boot_disk_size_gb": "boot-disk-size"}
    checked = 0
    for field in fields(LaunchSettings):
        flag = flag_of.get(field.name, field.name.replace("_", "-"))
        if flag not in options or field.default in (MISSING, None, False):
            continue
        assert f"(default: {_as_typed(field.default)}" in options[flag], (flag, options[flag])
        checked += 1
    assert checked >= 10


NUMBER_FLAGS = [
    "boot-disk-size",
    "scheduler-port",
    "dashboard-port",
    "worker-vms",
    "workers",
    "threads-per-worker",
    "timeout",
]


def test_number_flags_show_int_and_refuse_text_in_one_line(tmp_path):
    """=INT in the help, yet `--boot-disk-size abc` stays daskbox's one line (invoke's own
    int cast would end in a ValueError traceback), and a flag not given still lets
    [tool.daskbox.gcloud] decide."""
    help_text = _launch_help(tmp_path)
    for flag in NUMBER_FLAGS:
        assert re.search(rf"--{flag}=INT\s", help_text), flag
    invoke = str(DASKBOX.parent / "invoke")
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[tool.daskbox.gcloud]\nboot-disk-size-gb = 5\n'
    )
    base = [
        invoke,
        "launch",
        "--image",
        PINNED,
        "--source-range",
        "203.0.113.7/32",
        "--project",
        "acme-prod",
    ]
    for extra, message in [
        (["--boot-disk-size", "abc"], "error: flag: boot-disk-size-gb = 'abc' is not valid"),
        (["--worker-vms", "x"], "error: flag: worker-vms = 'x' is not valid"),
        ([], "error: boot-disk-size 5 is invalid: expected 10 to 65536"),  # the config's
        (["--boot-disk-size", "7"], "error: boot-disk-size 7 is invalid: expected 10"),
    ]:
        refused = subprocess.run(
            [*base, *extra],
            cwd=tmp_path,
            env={"PATH": str(tmp_path)},
            capture_output=True,
            text=True,
        )
        assert refused.returncode == 1, refused.stdout
        [line] = refused.stderr.strip().splitlines()
        assert line.startswith(message), line


def test_dashboard_port_is_a_number_refused_in_one_line(tmp_path):
    shown = subprocess.run(
        [str(DASKBOX), "--help", "dashboard"], cwd=tmp_path, capture_output=True, text=True
    )
    assert re.search(r"--port=INT\s", shown.stdout)
    refused = subprocess.run(
        [str(DASKBOX), "dashboard", "--port", "abc"], cwd=tmp_path, capture_output=True, text=True
    )
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "error: --port 'abc' is not a port number: e.g. --port 8788, or 0 for a free one"
    ]


def test_the_launch_settings_table_states_the_settings_defaults():
    """docs/launch.md's table of keys agrees with LaunchSettings's defaults."""
    from dataclasses import MISSING, fields
    from pathlib import Path

    from daskbox.gcloud.settings import LaunchSettings

    page = (Path(__file__).parents[2] / "docs" / "launch.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([\w-]+)` \|[^|]*\| `([^`]+)`", page, flags=re.M))
    checked = 0
    for field in fields(LaunchSettings):
        key = field.name.replace("_", "-")
        if key in rows and field.default not in (MISSING, None):
            assert rows[key] == _as_typed(field.default), key
            checked += 1
    assert checked >= 12
