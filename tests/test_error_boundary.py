"""One error boundary: a bug in a task, or inside ``connect()``, is one line naming its type,
its message and the file holding its traceback, never a bare traceback."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from daskbox import connect
from daskbox.client.connection import ConnectionFile, write_connection_file
from daskbox.errors import DaskboxError, InternalError
from daskbox.gcloud.tls import make_tls_material

DASKBOX_CLI = Path(sys.executable).parent / "daskbox"
INTERNAL = re.compile(r"internal error: (\w+): (.*) \(traceback in (\S+)\)")


def _connection_file(folder: Path, address: str) -> Path:
    connection = ConnectionFile(
        instance="boundary",
        target="local",
        scheduler_address=address,
        dashboard_url="",
        image="x",
        lock_hash="0" * 64,
        groups=("main",),
        tls=make_tls_material("boundary").client,
    )
    return write_connection_file(folder / ".daskbox" / "boundary.json", connection)


def _traceback(path: str) -> str:
    text = Path(path).read_text(encoding="utf-8")
    Path(path).unlink()
    return text


@pytest.mark.cli
def test_a_failing_import_in_a_task_is_one_line_with_its_traceback_in_a_file(tmp_path):
    """The fresh-machine case: an import that fails (here a broken distributed) in a task."""
    shadow = tmp_path / "shadow" / "distributed"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("a broken install of distributed")\n')
    path = _connection_file(tmp_path, "tls://127.0.0.1:8786")
    checked = subprocess.run(
        [DASKBOX_CLI, "check", "--path", str(path)],
        capture_output=True,
        text=True,
        env={"PATH": str(tmp_path), "PYTHONPATH": str(shadow.parent)},
    )
    assert checked.returncode == 1
    [line] = checked.stderr.splitlines()
    match = INTERNAL.fullmatch(line.removeprefix("error: "))
    assert line.startswith("error: ") and match, line
    assert match.groups()[:2] == ("ImportError", "a broken install of distributed")
    written = _traceback(match[3])
    assert written.startswith("Traceback (most recent call last):")
    assert written.rstrip().endswith("ImportError: a broken install of distributed")


def test_an_exception_inside_connect_is_an_internal_error_chained_to_it(tmp_path):
    """distributed's own KeyError for a client option daskbox passes on unread."""
    path = _connection_file(tmp_path, "tls://127.0.0.1:8786")
    with pytest.raises(InternalError) as raised:
        connect(path=path, timeout=2, heartbeat_interval="abc")
    assert isinstance(raised.value, DaskboxError)
    match = INTERNAL.fullmatch(str(raised.value))
    assert match and match[1] == "KeyError", raised.value
    assert isinstance(raised.value.__cause__, KeyError)
    assert "KeyError" in _traceback(match[3])


@pytest.mark.cli
def test_a_reader_that_goes_away_is_no_internal_error(tmp_path):
    """`daskbox launch --dry-run | head -3`: the closed pipe stops the task quietly."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    image = "us-central1-docker.pkg.dev/acme/daskbox/demo@sha256:" + "ab" * 32
    process = subprocess.Popen(
        [
            DASKBOX_CLI,
            "launch",
            "--dry-run",
            "--image",
            image,
            "--project",
            "acme-prod",
            "--source-range",
            "203.0.113.7/32",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # before the task prints its first line
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == 1
    assert stderr == ""


# Each task's first call that can fail, by module and name: a bug there must end in the one
# internal-error line (invoke prints an Exit's message on stderr, with its code).
FIRST_CALLS = {
    "build": ("daskbox.images.tasks", "find_project_root"),
    "push": ("daskbox.images.tasks", "find_project_root"),
    "dockerfile": ("daskbox.images.tasks", "find_project_root"),
    "cache": ("daskbox.images.cache.CacheLimits", "resolve"),
    "launch": ("daskbox.gcloud.tasks", "find_project_root"),
    "teardown": ("daskbox.gcloud.tasks", "find_project_root"),
    "scale": ("daskbox.gcloud.tasks", "find_project_root"),
    "status": ("daskbox.gcloud.status", "local_rows"),
    "check": ("daskbox.client.connect", "open_connection_file"),
    "dashboard": ("daskbox.client.connect", "open_connection_file"),
}


def test_every_task_is_covered_below():
    """A new task joins FIRST_CALLS, so the boundary is tested for it too."""
    from daskbox.tasks import ns

    assert sorted(ns.task_names) == sorted(FIRST_CALLS)


@pytest.mark.parametrize("name", sorted(FIRST_CALLS))
def test_a_bug_in_any_task_is_one_internal_error_line(name, monkeypatch):
    from invoke.context import Context
    from invoke.exceptions import Exit

    from daskbox.tasks import ns

    target, attribute = FIRST_CALLS[name]

    def bug(*args, **kwargs):
        raise RuntimeError(f"a bug in {name}\nover two lines")

    monkeypatch.setattr(f"{target}.{attribute}", bug)
    arguments = {"scale": {"vms": "1"}}.get(name, {})
    with pytest.raises(Exit) as raised:
        ns[name].body(Context(), **arguments)
    assert raised.value.code == InternalError.exit_code
    match = INTERNAL.fullmatch(str(raised.value.message).removeprefix("error: "))
    assert str(raised.value.message).startswith("error: ") and match, raised.value.message
    assert match.groups()[:2] == ("RuntimeError", f"a bug in {name} over two lines")
    assert f"RuntimeError: a bug in {name}" in _traceback(match[3])
