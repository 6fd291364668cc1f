"""The one place that runs gcloud: print the command, run it, turn failures into one line."""

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


def require_gcloud() -> str:
    """Path of the gcloud CLI, or a one-line error saying how to install it."""
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


def run_gcloud(argv: Sequence[str], echo: Progress | None = print) -> str:
    """Run one gcloud command (printing it first); return stdout or raise one line."""
    require_gcloud()
    if echo is not None:
        echo(f"$ {shlex.join(argv)}")
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise GcloudCommandError(argv, _one_line(result.stderr))
    return result.stdout


def run_gcloud_json(argv: Sequence[str], echo: Progress | None = print) -> Any:
    """``run_gcloud`` for ``--format json`` commands."""
    out = run_gcloud(argv, echo)
    try:
        return json.loads(out) if out.strip() else None
    except json.JSONDecodeError:
        raise GcloudError(f"`{' '.join(argv[:4])} ...` printed no JSON: {out[:200]!r}") from None
