"""The one place that runs gcloud: print the command, run it, turn failures into one line.

gcloud is found with ``shutil.which`` and run by that full path, so ``gcloud.cmd`` on
Windows starts without a shell. Independent commands (a launch's firewall rules and its
instance, a teardown's deletions) run side by side: gcloud takes about a second just to
start, and the API calls themselves are short.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

from daskbox._tasks import Progress
from daskbox.errors import GcloudError

NOT_AUTHENTICATED = "gcloud is not authenticated: run `gcloud auth login`"


class GcloudCommandError(GcloudError):
    """A gcloud command exited non-zero; ``detail`` is gcloud's own error, on one line."""

    def __init__(self, argv: Sequence[str], detail: str) -> None:
        self.argv = list(argv)
        self.detail = detail
        super().__init__(f"`{' '.join(argv[:4])} ...` failed: {detail}")

    def missing(self, resource: str) -> bool:
        """Whether the API said ``resource`` itself does not exist, e.g.
        ``projects/p/zones/z/instances/i``. A missing zone or project names a shorter
        path, so it is not mistaken for an instance that is already gone."""
        return f"'{resource}' was not found" in self.detail

    def exists(self, resource: str) -> bool:
        """Whether the API refused to create ``resource`` because it already exists."""
        return f"'{resource}' already exists" in self.detail


def require_gcloud() -> str:
    """Full path of the gcloud CLI, or a one-line error saying how to install it."""
    path = shutil.which("gcloud")
    if path is None:
        raise GcloudError(
            "gcloud is not installed (not on PATH): install the Google Cloud CLI, "
            "https://cloud.google.com/sdk/docs/install, or use `invoke launch --local`"
        )
    return path


def _one_line(stderr: str) -> str:
    """gcloud's ``ERROR: (gcloud.x) message`` plus indented details, joined on one line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if line.startswith("ERROR:")), None)
    chosen = lines[start:] if start is not None else lines[-3:]
    text = " ".join(line.lstrip("- ") for line in chosen)
    text = re.sub(r"^ERROR: \(gcloud[.\w-]*\)\s*", "", text)
    return text or "no error output"


def _failure(argv: Sequence[str], stderr: str) -> GcloudError:
    detail = _one_line(stderr)
    if "gcloud auth login" in detail or "active account selected" in detail:
        return GcloudError(NOT_AUTHENTICATED)
    return GcloudCommandError(argv, detail)


def _start(argv: Sequence[str], echo: Progress | None) -> subprocess.Popen[str]:
    full = [require_gcloud(), *argv[1:]]
    if echo is not None:
        echo(f"$ {shlex.join(argv)}")
    return subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(argv: Sequence[str], process: subprocess.Popen[str]) -> str:
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise _failure(argv, stderr)
    return stdout


def run_gcloud(argv: Sequence[str], echo: Progress | None = print) -> str:
    """Run one gcloud command (printing it first); return stdout or raise one line."""
    return _finish(argv, _start(argv, echo))


def run_gcloud_all(
    commands: Sequence[Sequence[str]], echo: Progress | None = print
) -> list[str | GcloudError]:
    """Run independent commands side by side; each result is stdout or its error.

    An interrupt stops waiting at once; gcloud gets the same Ctrl-C from the terminal.
    """
    processes = [(argv, _start(argv, echo)) for argv in commands]
    results: list[str | GcloudError] = []
    for argv, process in processes:
        try:
            results.append(_finish(argv, process))
        except GcloudError as error:
            results.append(error)
    return results


def parse_json(argv: Sequence[str], out: str) -> Any:
    """gcloud's ``--format json`` output (None when empty)."""
    try:
        return json.loads(out) if out.strip() else None
    except json.JSONDecodeError:
        raise GcloudError(f"`{' '.join(argv[:4])} ...` printed no JSON: {out[:200]!r}") from None


def run_gcloud_json(argv: Sequence[str], echo: Progress | None = print) -> Any:
    """``run_gcloud`` for ``--format json`` commands."""
    return parse_json(argv, run_gcloud(argv, echo))
