"""The tasks as a user runs them (`invoke ...` in the project folder); no Docker needed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import copy_project

# Drives invoke, poetry or gcloud: with the full suite, not the quick in-process runs.
pytestmark = pytest.mark.cli

INVOKE = str(Path(sys.executable).parent / "invoke")


def invoke(project, *args: str) -> subprocess.CompletedProcess[str]:
    (project / "tasks.py").write_text("from daskbox.tasks import ns  # noqa: F401\n")
    return subprocess.run([INVOKE, *args], cwd=project, capture_output=True, text=True, check=False)


@pytest.mark.docker  # planning asks the engine for the base image's identity
def test_dockerfile_prints_and_writes_the_dockerfile(tmp_path):
    project = copy_project("package_mode", tmp_path)
    printed = invoke(project, "dockerfile")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.startswith("# Rendered by daskbox")
    written = invoke(project, "dockerfile", "--output", "Dockerfile.review")
    assert written.returncode == 0
    assert (project / "Dockerfile.review").read_text() == printed.stdout


def options_with_help(help_text: str) -> dict[str, str]:
    """``--flag`` -> its help text, from invoke's ``--help TASK`` output."""
    options: dict[str, str] = {}
    current = None
    for line in help_text.split("Options:", 1)[1].splitlines():
        match = re.match(r"^  (?:-\w(?: \w+)?, )?(--[\w-]+)(?:=\w+)?\s*(.*)$", line)
        if match:
            current = match[1]
            options[current] = match[2].strip()
        elif current and line.strip():
            options[current] += " " + line.strip()
    return options


@pytest.mark.parametrize(
    ("name", "flags"),
    [
        (
            "build",
            {
                "--with",
                "--extras",
                "--base-image",
                "--repository",
                "--platform",
                "--force",
                "--dry-run",
                "--verbose",
            },
        ),
        ("push", {"--with", "--extras", "--base-image", "--repository", "--platform", "--dry-run"}),
        (
            "dockerfile",
            {"--with", "--extras", "--base-image", "--repository", "--platform", "--output"},
        ),
    ],
)
def test_every_flag_has_help(tmp_path, name, flags):
    shown = invoke(copy_project("non_package", tmp_path), "--help", name)
    assert shown.returncode == 0, shown.stderr
    docstring = shown.stdout.split("Docstring:", 1)[1].split("Options:", 1)[0].strip()
    assert docstring and docstring[0].isupper()
    options = options_with_help(shown.stdout)
    assert set(options) == flags
    assert all(len(text) > 20 for text in options.values()), options
    assert "adds to the configured" in options["--extras"] and "main is always" in options["--with"]


def test_list_shows_every_daskbox_task(tmp_path):
    listed = invoke(copy_project("non_package", tmp_path), "--list")
    assert listed.returncode == 0, listed.stderr
    names = re.findall(r"^  (\w+) ", listed.stdout, flags=re.MULTILINE)
    assert sorted(names) == sorted(
        [
            "build",
            "push",
            "dockerfile",
            "cache",
            "launch",
            "scale",
            "teardown",
            "status",
            "check",
            "dashboard",
        ]
    )


@pytest.mark.docker  # planning asks the engine for the base image's identity
def test_build_warns_once_when_the_image_has_no_bokeh(tmp_path, repo_root):
    # Planned twice (build, then dockerfile), said once: by build.
    without = invoke(copy_project("non_package", tmp_path), "build", "--dry-run", "dockerfile")
    assert without.returncode == 0, without.stderr
    assert [line for line in without.stderr.splitlines() if "bokeh" in line] == [
        'warning: bokeh is not in the image, so its dashboard will be empty ("Dask needs '
        'bokeh"): run `poetry add bokeh`, then `invoke build push`'
    ]
    # The quickstart has it.
    quickstart = repo_root / "examples" / "quickstart"
    with_bokeh = subprocess.run(
        [INVOKE, "build", "--dry-run"], cwd=quickstart, capture_output=True, text=True, check=False
    )
    assert with_bokeh.returncode == 0, with_bokeh.stderr
    assert "bokeh" not in with_bokeh.stderr


@pytest.mark.docker  # planning asks the engine for the base image's identity
def test_extras_and_groups_flags_add_to_the_configured_ones(tmp_path):
    project = copy_project("extras_groups_markers", tmp_path)
    with (project / "pyproject.toml").open("a") as pyproject:
        pyproject.write('\n[tool.daskbox]\ngroups = ["main", "reports"]\nextras = ["tables"]\n')
    configured = invoke(project, "build", "--dry-run")
    assert configured.returncode == 0, configured.stderr
    assert "DASKBOX_GROUPS=main,reports " in configured.stdout
    assert 'dev.daskbox.extras="tables"' in configured.stdout
    # The fixture defines one extra, so "adds" shows as: still there, and not doubled.
    added = invoke(project, "build", "--dry-run", "--extras", "tables", "--with", "dev")
    assert added.returncode == 0, added.stderr
    assert "DASKBOX_GROUPS=main,reports,dev " in added.stdout
    assert 'dev.daskbox.extras="tables"' in added.stdout


@pytest.mark.docker  # planning asks the engine for the base image's identity
def test_flags_beat_pyproject_settings(tmp_path):
    project = copy_project("extras_groups_markers", tmp_path)
    with (project / "pyproject.toml").open("a") as pyproject:
        pyproject.write('\n[tool.daskbox]\nrepository = "localhost:5000/from-config"\n')
    default = invoke(project, "build", "--dry-run")
    assert "DASKBOX_GROUPS=main " in default.stdout
    assert "would build localhost:5000/from-config:" in default.stdout
    chosen = invoke(
        project,
        "build",
        "--dry-run",
        "--with",
        "reports",
        "--extras",
        "tables",
        "--repository",
        "127.0.0.1:5000/from-flag",
    )
    assert chosen.returncode == 0, chosen.stderr
    assert "DASKBOX_GROUPS=main,reports " in chosen.stdout
    assert 'dev.daskbox.extras="tables"' in chosen.stdout
    assert "would build 127.0.0.1:5000/from-flag:" in chosen.stdout


def test_errors_are_one_line_with_a_non_zero_exit(tmp_path):
    cases = {
        "stale_lock": "run `poetry lock`",
        "python39": "requires Python >=3.9,<3.10",
        "no_distributed": "poetry add distributed",
    }
    for name, fix in cases.items():
        failed = invoke(copy_project(name, tmp_path), "dockerfile")
        assert failed.returncode == 1, name
        assert failed.stdout == "" and fix in failed.stderr
        assert failed.stderr.strip().count("\n") == 0, failed.stderr
    project = copy_project("package_mode", tmp_path)
    bad_name = invoke(project, "dockerfile", "--repository", "Bad Name")
    assert bad_name.returncode == 1 and "invalid image reference 'Bad Name'" in bad_name.stderr


def test_build_push_refuses_flags_that_reach_push_only(tmp_path):
    """invoke hands flags after `push` to push alone: build would make another image."""
    project = copy_project("extras_groups_markers", tmp_path)
    refused = invoke(project, "build", "--dry-run", "push", "--dry-run", "--extras", "tables")
    assert refused.returncode == 1
    # The fixture has no bokeh, so build's one-line warning may come first.
    assert refused.stderr.strip().splitlines()[-1] == (
        "error: `invoke build push --extras tables` gives those flags to push only, so build "
        "made another image than push would push: write `invoke build --extras tables push`"
    )
    given_to_both = invoke(project, "build", "--dry-run", "--extras", "tables", "push", "--dry-run")
    # Both plan the same image (push --dry-run then asks the registry, absent here).
    assert "would build" in given_to_both.stdout
    assert "gives those flags" not in given_to_both.stderr
