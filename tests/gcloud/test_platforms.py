"""Every platform's user side: paths built with Windows path classes, gcloud run by the full
path ``shutil.which`` finds (``gcloud.cmd`` on Windows), no POSIX-only call on the laptop."""

from __future__ import annotations

import ast
import os
import stat
from pathlib import Path, PureWindowsPath

import pytest
from specs import fixed_spec

from daskbox.client.connection import connection_dir, connection_path
from daskbox.gcloud._gcloud import run_gcloud
from daskbox.gcloud.local import check_argv, local_argv, server_tls_dir, tls_dir

SRC = Path(__file__).resolve().parents[2] / "src" / "daskbox"
WINDOWS_ROOT = PureWindowsPath(r"C:\Users\ada\projects\demo")
# Called on a user's laptop, these exist on POSIX only (os.getuid & co.): never call them
# directly outside the image's entrypoint; look them up with getattr and a fallback.
POSIX_ONLY = {
    "fchmod",
    "fchown",
    "geteuid",
    "getegid",
    "getuid",
    "getgid",
    "chown",
    "lchown",
    "killpg",
    "setsid",
    "getpgid",
    "fork",
    "getpwnam",
    "WNOHANG",
}


def test_project_paths_with_windows_path_classes():
    assert connection_dir(WINDOWS_ROOT) == PureWindowsPath(r"C:\Users\ada\projects\demo\.daskbox")
    assert connection_path(WINDOWS_ROOT, "daskbox-demo") == PureWindowsPath(
        r"C:\Users\ada\projects\demo\.daskbox\daskbox-demo.json"
    )
    assert tls_dir(WINDOWS_ROOT, "daskbox-demo") == PureWindowsPath(
        r"C:\Users\ada\projects\demo\.daskbox\daskbox-demo.tls"
    )
    assert isinstance(server_tls_dir(WINDOWS_ROOT, "x"), PureWindowsPath)


def test_docker_mounts_a_windows_folder_unambiguously():
    """``--mount source=...``: the drive letter's colon is no separator there (``-v`` would
    read ``C:\\...:/etc/daskbox/tls:ro`` as three fields)."""
    expected = (
        r"type=bind,source=C:\Users\ada\projects\demo\.daskbox\daskbox-demo.tls\server,"
        "target=/etc/daskbox/tls,readonly"
    )
    for argv in (local_argv(WINDOWS_ROOT, fixed_spec()), check_argv(WINDOWS_ROOT, fixed_spec())):
        assert argv[argv.index("--mount") + 1] == expected
        assert "-v" not in argv and "--volume" not in argv


def test_gcloud_runs_by_the_full_path_which_finds(tmp_path, monkeypatch):
    """A ``gcloud`` reached only through PATH lookup is started by its full path (what lets
    Windows start ``gcloud.cmd`` without a shell); the printed command stays ``gcloud``."""
    fake = tmp_path / "bin" / "gcloud"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "$0 $*"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(fake.parent))
    printed: list[str] = []
    out = run_gcloud(["gcloud", "compute", "zones", "list"], printed.append)
    assert out.strip() == f"{fake} compute zones list"
    assert printed == ["$ gcloud compute zones list"]


def _laptop_modules() -> list[Path]:
    """Every module that runs on the user's machine (not the image's entrypoint)."""
    return [path for path in SRC.rglob("*.py") if "entrypoint" not in path.relative_to(SRC).parts]


@pytest.mark.parametrize("path", _laptop_modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_posix_only_call_on_the_laptop(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    direct = [
        f"os.{node.attr} (line {node.lineno})"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
        and node.attr in POSIX_ONLY
    ]
    assert direct == [], "use getattr(os, ...) with a fallback for Windows"


def test_the_scan_above_finds_a_direct_call():
    tree = ast.parse("import os\nos.geteuid()\n")
    assert any(isinstance(n, ast.Attribute) and n.attr in POSIX_ONLY for n in ast.walk(tree))
    assert os.name in {"posix", "nt"}
