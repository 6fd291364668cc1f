"""The real-projects corpus covers what issue 17 asks, and its page matches its results.

The builds themselves run in scripts/real_projects.py (minutes per project, PyPI, the fetched
snapshots); these checks read only the committed manifest, results and page.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "real_projects", ROOT / "scripts" / "real_projects.py"
)
assert _spec is not None and _spec.loader is not None
real_projects = importlib.util.module_from_spec(_spec)
sys.modules["real_projects"] = real_projects  # dataclasses look their module up by name
_spec.loader.exec_module(real_projects)

# Issue 17, "Real projects, every session": what the corpus must cover, as the manifest's
# `covers` phrases it.
REQUIRED_CASES = {
    "numpy 1.x": r"numpy 1\.x",
    "numpy 2.x": r"numpy 2\.x",
    "the scientific stack": r"scientific stack",
    "a database driver": r"database driver",
    "geo": r"\bgeo\b",
    "ML with OpenMP": r"ML with OpenMP",
    "a git dependency": r"git dependency",
    "a path dependency": r"path dependenc",
    "an sdist with C": r"sdist with C",
    "a dynamic-version build backend": r"dynamic-version build backend",
    "package-mode = false": r"package-mode = false",
}


def test_the_corpus_has_twelve_pinned_projects_covering_every_case():
    projects = real_projects.read_manifest()
    assert len(projects) >= 12
    assert len({p.name for p in projects}) == len(projects)
    for project in projects:
        assert re.fullmatch(r"[0-9a-f]{40}", project.commit), project.name
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", project.repo), project.name
        assert project.expect in {"build", "refuse", "fail"}, project.name
        # A project that does not build says why, whose fault it is and the fix, in one line.
        assert project.expect == "build" or project.finding, project.name
        assert "\n" not in project.finding, project.name
        assert project.modules, project.name
    covered = [" / ".join(p.covers) for p in projects]
    missing = [
        case
        for case, pattern in REQUIRED_CASES.items()
        if not any(re.search(pattern, text) for text in covered)
    ]
    assert not missing, f"no project covers: {missing}"
    assert any(p.arm64 for p in projects)


def test_the_page_is_written_from_the_recorded_results(tmp_path):
    results = real_projects.load_results()
    assert results, "run scripts/real_projects.py"
    projects = real_projects.read_manifest()
    assert {name for name, _ in results} <= {p.name for p in projects}
    page = tmp_path / "page.md"
    real_projects.write_page(results, projects, page)
    assert page.read_text() == (ROOT / "docs" / "real-projects.md").read_text()
    for row in results.values():
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", row["date"])
        assert (row["outcome"] == "built") == (row["message"] == ""), row["name"]
    assert json.loads((ROOT / "tests" / "real_projects" / "results.json").read_text())


def test_every_recorded_run_ended_as_its_project_expects():
    """A build that fails, or a refusal that builds, is a finding to fix or to document."""
    by_name = {p.name: p for p in real_projects.read_manifest()}
    unexpected = [
        f"{name} ({platform}): {row['outcome']} at {row['stage']}: {row['message'][:200]}"
        for (name, platform), row in real_projects.load_results().items()
        if row["outcome"] != by_name[name].expected_outcome and not by_name[name].open
    ]
    assert not unexpected, unexpected
