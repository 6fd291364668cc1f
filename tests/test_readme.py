"""The documentation shows what the tools really print."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_docs_list_exactly_the_tasks_invoke_lists():
    invoke = Path(sys.executable).parent / "invoke"
    listed = subprocess.run(
        [str(invoke), "--list"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.rstrip()
    page = (ROOT / "docs" / "usage.md").read_text(encoding="utf-8")
    start = page.index("$ invoke --list\n") + len("$ invoke --list\n")
    shown = page[start : page.index("```", start)].rstrip()
    assert shown == listed
