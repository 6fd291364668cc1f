"""The README stays short and points into docs/; what the docs say of the tasks is true.

The Sphinx build itself (warnings as errors) runs in scripts/test.sh, next to ruff and mypy.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from invoke.parser import Parser

from daskbox.tasks import ns

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 250


def test_the_readme_has_at_most_250_lines():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines, more than {MAX_README_LINES}: move detail into docs/"
    )


def test_the_readme_links_only_to_docs_pages_that_exist():
    links = re.findall(r"\]\((docs/[^)#\s]+)", README.read_text(encoding="utf-8"))
    assert len(links) >= 5
    assert [link for link in links if not (ROOT / link).is_file()] == []


def test_the_readme_keeps_the_two_contributor_commands():
    """CI and reviewers run these two lines as they stand."""
    lines = README.read_text(encoding="utf-8").splitlines()
    demo = (
        "$ bash scripts/demo.sh     # the whole job on the local target, then everything torn down"
    )
    test = (
        "$ bash scripts/test.sh     # lint + the test suite against real Docker, registry, gcloud"
    )
    assert demo in lines
    assert test + ", Dask" in lines


def test_the_usage_page_shows_the_readme_section_between_its_markers():
    readme = README.read_text(encoding="utf-8")
    usage = (DOCS / "usage.md").read_text(encoding="utf-8")
    markers = re.findall(r"^:(?:start-after|end-before): (.+)$", usage, flags=re.MULTILINE)
    assert len(markers) == 2
    start, end = (readme.index(marker) for marker in markers)
    assert readme.count(markers[0]) == readme.count(markers[1]) == 1
    assert "### Add daskbox to your project" in readme[start:end]


def task_flags(command: str) -> dict[str, list[str]]:
    """The --extras each task gets from `command`, parsed by invoke as `invoke` would."""
    argv = command.split()
    assert argv[0] == "invoke"
    parsed = Parser(contexts=ns.to_contexts()).parse_argv(argv[1:])
    return {context.name: context.args["extras"].value for context in parsed}


def extras_spellings(text: str) -> tuple[str, str, str]:
    """The spelling a page calls broken, the one it gives as the fix, and the extra's name."""
    text = " ".join(text.split())
    broken = re.search(
        r"`(invoke build[^`]*)` (?:would give|gives) `--extras (\w+)` to `push` only", text
    )
    fix = re.search(r"[Ww]rite `(invoke build[^`]*)`", text)
    assert broken is not None and fix is not None
    return broken.group(1), fix.group(1), broken.group(2)


@pytest.mark.parametrize("page", [README, DOCS / "images.md"], ids=lambda page: page.name)
def test_the_extras_spelling_the_docs_give_is_how_invoke_parses_it(page):
    broken, fix, extra = extras_spellings(page.read_text(encoding="utf-8"))
    assert task_flags(broken) == {"build": [], "push": [extra]}  # push alone gets it
    assert task_flags(fix) == {"build": [extra], "push": []}  # build gets it; push reuses
