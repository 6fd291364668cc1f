#!/usr/bin/env python3
"""Build the real-projects corpus with this checkout's daskbox, as a new user would.

For each project of tests/real_projects/projects.toml (or those named with ``--only``):

1. get its pinned snapshot: the bare git directory the search tool's ``fetch`` leaves in
   /work/.mirror/<owner>+<name>/repo, or a clone named <owner>+<name> in ``--mirror-dir``
   (an absent snapshot is reported as such, with the fetch to run), and clone it at the
   pinned commit into a scratch folder (tags included: dynamic-version backends need them);
2. adopt daskbox the way the README says: ``distributed`` and ``psutil`` into the main group
   when the lock has neither there, then the README's ``poetry add --group dev "daskbox; ..."``
   against daskbox's wheel from this checkout, served on loopback (tests/adoption/'s machinery;
   Poetry reads PyPI through the poetry-simple-index plugin, so the lock gains no source URL
   but the local daskbox index), the two-line ``tasks.py`` and the project's ``[tool.daskbox]``;
3. run ``invoke build`` (no push) for the target platform, timed;
4. check the image: its installed distributions (read by the image's own Python) against the
   image record's export and against the ``dev.daskbox.installed-digest`` label, and import the
   project's main modules (``docker run --rm --network host --entrypoint /opt/venv/bin/python``);
5. merge the results into tests/real_projects/results.json and write docs/real-projects.md.

Usage (serially, on a shared machine under ``nice``)::

    nice -n 10 .venv/bin/python scripts/real_projects.py [--only NAME ...]
        [--platform linux/arm64] [--mirror-dir DIR] [--keep-images] [--workdir DIR]

With ``--platform linux/arm64`` and no ``--only``, the projects marked ``arm64 = true`` are built.
Needs the Docker engine, the stand-in bases (scripts/setup.sh), PyPI, and the plugin:
``.venv/bin/pip install /work/shared/poetry-simple-index``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tomlkit

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))

from adoption.adopt import (  # noqa: E402  (tests/ is not a package on the path by default)
    README_ADD_COMMAND,
    PoetryFailed,
    poetry_environ,
    run_poetry,
)
from adoption.local_index import LocalIndex, serving_daskbox_index  # noqa: E402
from daskbox.images.environment import installed_set_digest, normalize  # noqa: E402
from daskbox.record import ImageRecord, record_path  # noqa: E402

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

MANIFEST = REPO_ROOT / "tests" / "real_projects" / "projects.toml"
RESULTS = REPO_ROOT / "tests" / "real_projects" / "results.json"
PAGE = REPO_ROOT / "docs" / "real-projects.md"
DEFAULT_MIRRORS = Path("/work/.mirror")
VENV_BIN = Path(sys.executable).parent
TASKS_LINE = "from daskbox.tasks import ns  # noqa: F401\n"
# The main-group packages the image's entrypoint needs (README: "Set up your project"); the
# marker is daskbox's Python floor, as on daskbox itself, for ranges that start below 3.10.
ENTRYPOINT_NEEDS = {"distributed": "distributed; python_version >= '3.10'", "psutil": "psutil"}
BUILD_TIMEOUT_S = 3600
MIB = 1024 * 1024

# Run in the image by its own Python: every installed distribution, name -> version.
LIST_INSTALLED = """
import importlib.metadata, json
seen = {}
for dist in importlib.metadata.distributions():
    seen.setdefault(dist.metadata["Name"], dist.version)
print(json.dumps(seen))
"""
# Run in the image: import each module given, one line per failure.
IMPORT_MODULES = """
import importlib, sys
failed = 0
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except BaseException as error:
        failed += 1
        text = " ".join(str(error).split())
        print(f"{name}: {type(error).__name__}: {text}"[:300])
sys.exit(1 if failed else 0)
"""


@dataclass(frozen=True)
class Project:
    """One entry of the manifest."""

    name: str
    repo: str
    commit: str
    modules: tuple[str, ...]
    expect: str
    covers: tuple[str, ...]
    why: str
    subdirectory: str = "."
    sparse: tuple[str, ...] = ()
    daskbox: Mapping[str, Any] = field(default_factory=dict)
    git_mirrors: Mapping[str, str] = field(default_factory=dict)
    fixes: Mapping[str, Any] = field(default_factory=dict)
    arm64: bool = False
    finding: str = ""
    import_env: Mapping[str, str] = field(default_factory=dict)
    open: str = ""

    @property
    def expected_outcome(self) -> str:
        """The outcome a correct daskbox has: ``fail`` is the project's own fault (its finding)."""
        return {"build": "built", "refuse": "refused", "fail": "failed"}[self.expect]

    @property
    def mirror_name(self) -> str:
        return self.repo.replace("/", "+")


def read_manifest(path: Path = MANIFEST) -> list[Project]:
    entries = tomllib.loads(path.read_text())["project"]
    return [
        Project(
            name=entry["name"],
            repo=entry["repo"],
            commit=entry["commit"],
            modules=tuple(entry["modules"]),
            expect=entry["expect"],
            covers=tuple(entry["covers"]),
            why=entry["why"],
            subdirectory=entry.get("subdirectory", "."),
            sparse=tuple(entry.get("sparse", ())),
            daskbox=dict(entry.get("daskbox", {})),
            git_mirrors=dict(entry.get("git-mirrors", {})),
            fixes=dict(entry.get("fixes", {})),
            arm64=bool(entry.get("arm64", False)),
            finding=entry.get("finding", ""),
            open=entry.get("open", ""),
            import_env={str(k): str(v) for k, v in entry.get("import-env", {}).items()},
        )
        for entry in entries
    ]


@dataclass
class Result:
    """What happened to one project on one platform; ``stage`` is where it stopped."""

    name: str
    platform: str
    expect: str
    outcome: str = "not run"  # built | refused | failed | absent
    stage: str = ""  # snapshot | adopt | build | installed-set | import | "" when all passed
    message: str = ""  # the one-line error (or "" when built and checked)
    installed_check: str = ""
    imports: str = ""
    image_mib: float | None = None
    base_mib: float | None = None
    venv_mib: float | None = None
    build_seconds: float | None = None
    adopt_seconds: float | None = None
    notes: list[str] = field(default_factory=list)
    date: str = ""
    daskbox_commit: str = ""


class StepFailed(Exception):
    """A step of the run failed: ``stage`` and the one-line ``message`` go in the table."""

    def __init__(self, stage: str, message: str, outcome: str = "failed") -> None:
        super().__init__(message)
        self.stage = stage
        self.message = message
        self.outcome = outcome


def run(
    argv: Sequence[str],
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv),
        cwd=cwd,
        env=None if env is None else dict(env),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def one_line(text: str) -> str:
    """The line that says what went wrong, whole: daskbox's ``error:`` line, else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return errors[-1] if errors else (lines[-1] if lines else "(no output)")


def poetry_error(output: str) -> str:
    """Poetry's own message among its progress lines and the build backends' warnings."""
    progress = ("Updating dependencies", "Resolving dependencies", "Writing lock file", "Using ")
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    useful = [
        line
        for line in lines
        if not line.startswith(progress) and "Warning" not in line and "warnings.warn" not in line
    ]
    errors = [
        line for line in useful if re.search(r"not found|Because |[Ee]rror|Unable|failed", line)
    ]
    return (errors or useful or ["(no output)"])[0]


# -- 1. the snapshot ------------------------------------------------------------------------


def find_snapshot(project: Project, mirror_dirs: Sequence[Path]) -> Path:
    """The git directory holding the pinned commit, or StepFailed saying what to fetch."""
    tried = []
    for root in mirror_dirs:
        for candidate in (root / project.mirror_name / "repo", root / project.mirror_name):
            if not candidate.is_dir():
                continue
            tried.append(str(candidate))
            found = run(
                [
                    "git",
                    "--git-dir",
                    str(_git_dir(candidate)),
                    "cat-file",
                    "-e",
                    f"{project.commit}^{{commit}}",
                ]
            )
            if found.returncode == 0:
                return candidate
    where = f" ({', '.join(tried)} lack commit {project.commit[:12]})" if tried else ""
    raise StepFailed(
        "snapshot",
        f"snapshot absent: fetch github:{project.repo} (search tool) or pass --mirror-dir{where}",
        outcome="absent",
    )


def _git_dir(path: Path) -> Path:
    return path / ".git" if (path / ".git").is_dir() else path


def check_out(project: Project, snapshot: Path, destination: Path) -> Path:
    """Clone ``snapshot`` at the pinned commit into ``destination``; the project's folder."""
    steps = [
        ["git", "clone", "--quiet", "--shared", "--no-checkout", str(snapshot), str(destination)]
    ]
    if project.sparse:
        steps.append(["git", "-C", str(destination), "sparse-checkout", "set", *project.sparse])
    steps.append(["git", "-C", str(destination), "checkout", "--quiet", "--detach", project.commit])
    for argv in steps:
        done = run(argv)
        if done.returncode != 0:
            raise StepFailed("snapshot", f"`{shlex.join(argv)}`: {one_line(done.stderr)}")
    return destination / project.subdirectory


# -- 2. adopting daskbox --------------------------------------------------------------------


def git_environment(project: Project, snapshots: Sequence[Path]) -> dict[str, str]:
    """git config (GIT_CONFIG_*) pointing each git dependency's URL at its fetched snapshot."""
    environ: dict[str, str] = {}
    pairs = []
    for url, repo in project.git_mirrors.items():
        mirror = Project(repo, repo, "HEAD", (), "", (), "")
        for root in snapshots:
            for candidate in (root / mirror.mirror_name / "repo", root / mirror.mirror_name):
                if candidate.is_dir():
                    pairs.append((f"url.{candidate.as_uri()}.insteadOf", url))
                    break
            else:
                continue
            break
        else:
            raise StepFailed(
                "snapshot",
                f"snapshot absent for the git dependency {url}: fetch github:{repo} (search tool)",
                outcome="absent",
            )
    if pairs:
        environ["GIT_CONFIG_COUNT"] = str(len(pairs))
        for index, (key, value) in enumerate(pairs):
            environ[f"GIT_CONFIG_KEY_{index}"] = key
            environ[f"GIT_CONFIG_VALUE_{index}"] = value
        # Poetry's own git client (dulwich) ignores insteadOf; the system git honours it.
        environ["POETRY_SYSTEM_GIT_CLIENT"] = "true"
    return environ


def main_group_names(lock: Path) -> set[str]:
    """Names the lock installs with the main group (Poetry 2 ``groups``, Poetry 1 ``category``)."""
    names: set[str] = set()
    for package in tomllib.loads(lock.read_text()).get("package", []):
        groups = package.get("groups")
        in_main = "main" in groups if groups is not None else package.get("category") == "main"
        if in_main:
            names.add(normalize(package["name"]))
    return names


def configure_daskbox(project_dir: Path, project: Project) -> None:
    """The user's ``[tool.daskbox]`` (a local repository name: nothing is pushed) and tasks.py."""
    pyproject = project_dir / "pyproject.toml"
    document = tomlkit.parse(pyproject.read_text())
    tool = document.setdefault("tool", tomlkit.table())
    table = tomlkit.table()
    table["repository"] = f"daskbox-corpus/{project.name}"
    for key, value in project.daskbox.items():
        table[key] = value
    tool["daskbox"] = table
    for dotted, value in project.fixes.items():
        *parents, key = dotted.split(".")
        container: Any = document
        for parent in parents:
            container = container.setdefault(parent, tomlkit.table())
        container[key] = value
    pyproject.write_text(tomlkit.dumps(document))
    tasks = project_dir / "tasks.py"
    existing = tasks.read_text() if tasks.exists() else ""
    tasks.write_text(
        existing + ("\n" if existing and not existing.endswith("\n") else "") + TASKS_LINE
    )


def adopt_daskbox(
    project_dir: Path, index: LocalIndex, environ: dict[str, str]
) -> tuple[float, list[str]]:
    """The README's adoption, lock only (``--lock``: the same resolution, no local install)."""
    notes = []
    start = time.perf_counter()
    try:
        run_poetry(
            ["source", "add", "--priority=supplemental", "daskbox-local", index.url],
            project_dir,
            environ,
        )
        missing = [
            spec
            for name, spec in ENTRYPOINT_NEEDS.items()
            if name not in main_group_names(project_dir / "poetry.lock")
        ]
        if missing:
            run_poetry(["add", *missing, "--lock"], project_dir, environ)
            notes.append(f"added to main: {', '.join(missing)}")
        _, *arguments = shlex.split(README_ADD_COMMAND)
        run_poetry([*arguments, "--lock"], project_dir, environ)
    except PoetryFailed as failure:
        raise StepFailed("adopt", f"poetry: {poetry_error(failure.output)}") from None
    return time.perf_counter() - start, notes


# -- 3. building ----------------------------------------------------------------------------


def build_image(
    project_dir: Path,
    platform: str,
    base_image: str | None,
    environ: Mapping[str, str],
    log: Path,
    result: Result,
) -> None:
    """``invoke build``, timed; a one-line ``error:`` is a refusal, anything else a failure."""
    argv = [str(VENV_BIN / "invoke"), "build", "--platform", platform]
    if base_image:
        argv += ["--base-image", base_image]
    start = time.perf_counter()
    try:
        done = run(argv, cwd=project_dir, env=environ, timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise StepFailed("build", f"`invoke build` ran over {BUILD_TIMEOUT_S} s") from None
    result.build_seconds = time.perf_counter() - start
    log.write_text(f"$ {shlex.join(argv)}\n{done.stdout}\n--- stderr\n{done.stderr}")
    warnings = [line.strip() for line in done.stderr.splitlines() if "warning" in line.lower()]
    result.notes += [line[:300] for line in warnings[:3]]
    if done.returncode != 0:
        refused = any(line.startswith("error:") for line in done.stderr.splitlines())
        raise StepFailed(
            "build", one_line(done.stderr or done.stdout), "refused" if refused else "failed"
        )


# -- 4. checking the image ------------------------------------------------------------------


def in_image(
    image: str, program: str, *arguments: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -c program arguments`` in ``image`` with the venv's Python as entrypoint."""
    argv = ["docker", "run", "--rm", "--network", "host", "--entrypoint", "/opt/venv/bin/python"]
    for key, value in (env or {}).items():
        argv += ["--env", f"{key}={value}"]
    return run([*argv, image, "-c", program, *arguments], timeout=900)


def image_size(reference: str) -> int:
    done = run(["docker", "image", "inspect", "--format", "{{.Size}}", reference])
    return int(done.stdout.strip()) if done.returncode == 0 else 0


def image_labels(reference: str) -> dict[str, str]:
    done = run(["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", reference])
    return dict(json.loads(done.stdout)) if done.returncode == 0 else {}


def check_installed_set(record: ImageRecord, labels: Mapping[str, str]) -> tuple[bool, str]:
    """The image's installed set (read in the image) against the record's export and label."""
    done = in_image(record.reference, LIST_INSTALLED)
    if done.returncode != 0:
        return False, f"cannot list the image's distributions: {one_line(done.stderr)}"
    listed: dict[str, str] = json.loads(done.stdout)
    installed: dict[str, str] = {normalize(name): version for name, version in listed.items()}
    exported = record.image_distributions
    missing = sorted(set(exported) - set(installed))
    moved = sorted(
        f"{name} {exported[name]}->{installed[name]}"
        for name in exported
        if name in installed and exported[name] not in (None, installed[name])
    )
    extra = sorted(set(installed) - set(exported))
    digest = installed_set_digest(installed)
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {', '.join(missing[:5])}")
    if moved:
        problems.append(f"other versions: {', '.join(moved[:5])}")
    if digest != labels.get("dev.daskbox.installed-digest"):
        problems.append("installed digest differs from the image's label")
    if digest != record.installed_digest:
        problems.append("installed digest differs from the image record")
    summary = f"{len(exported)} exported = installed; digest matches label and record"
    if extra:
        summary += f"; also installed: {', '.join(extra[:4])}" + (" ..." if len(extra) > 4 else "")
    return (not problems), ("; ".join(problems) if problems else summary)


def check_image(project: Project, project_dir: Path, platform: str, result: Result) -> None:
    record = ImageRecord.from_dict(json.loads(record_path(project_dir, platform).read_text()))
    labels = image_labels(record.reference)
    base = labels.get("org.opencontainers.image.base.name", "")
    result.image_mib = image_size(record.reference) / MIB
    result.base_mib = image_size(base) / MIB if base else None
    du = run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "host",
            "--entrypoint",
            "du",
            record.reference,
            "-sb",
            "/opt/venv",
        ]
    )
    if du.returncode == 0 and du.stdout.split():
        result.venv_mib = int(du.stdout.split()[0]) / MIB
    ok, summary = check_installed_set(record, labels)
    result.installed_check = summary
    if not ok:
        raise StepFailed("installed-set", summary)
    imported = in_image(record.reference, IMPORT_MODULES, *project.modules, env=project.import_env)
    if imported.returncode != 0:
        result.imports = " / ".join(imported.stdout.strip().splitlines()) or one_line(
            imported.stderr
        )
        raise StepFailed("import", result.imports)
    result.imports = f"{len(project.modules)} ok ({', '.join(project.modules)})"


def remove_image(project_dir: Path, platform: str) -> None:
    """Remove the image this run built (both its tags), never anything else."""
    path = record_path(project_dir, platform)
    if path.exists():
        record = ImageRecord.from_dict(json.loads(path.read_text()))
        run(["docker", "image", "rm", "--force", record.image_id])


# -- the run --------------------------------------------------------------------------------


def build_one(
    project: Project,
    platform: str,
    base_image: str | None,
    index: LocalIndex,
    poetry_env: dict[str, str],
    workdir: Path,
    mirror_dirs: Sequence[Path],
    keep_images: bool,
) -> Result:
    result = Result(project.name, platform, project.expect)
    scratch = workdir / "projects" / f"{project.name}-{platform.replace('/', '-')}"
    shutil.rmtree(scratch, ignore_errors=True)
    project_dir: Path | None = None
    try:
        snapshot = find_snapshot(project, mirror_dirs)
        git_env = git_environment(project, mirror_dirs)
        project_dir = check_out(project, snapshot, scratch)
        configure_daskbox(project_dir, project)
        result.notes += [
            f"changed in pyproject.toml: {k} = {v!r}" for k, v in project.fixes.items()
        ]
        environ = {**poetry_env, **git_env}
        result.adopt_seconds, notes = adopt_daskbox(project_dir, index, environ)
        result.notes += notes
        build_env = {
            **environ,
            "XDG_CACHE_HOME": str(workdir / "xdg-cache"),
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        log = workdir / "logs" / f"{scratch.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        build_image(project_dir, platform, base_image, build_env, log, result)
        check_image(project, project_dir, platform, result)
        result.outcome = "built"
    except StepFailed as failure:
        result.outcome, result.stage, result.message = (
            failure.outcome,
            failure.stage,
            failure.message,
        )
    finally:
        if project_dir is not None and not keep_images:
            remove_image(project_dir, platform)
    return result


def daskbox_commit() -> str:
    """The last commit that changed daskbox's code (``-dirty`` with uncommitted changes there)."""
    last = run(
        ["git", "-C", str(REPO_ROOT), "log", "-1", "--format=%h", "--abbrev=10", "--", "src"]
    )
    dirty = run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "src"]).stdout
    return last.stdout.strip() + ("-dirty" if dirty.strip() else "")


def default_base(platform: str) -> str | None:
    """The stand-in base for arm64 (the default base names this machine's amd64 CPython)."""
    if platform == "linux/amd64":
        return None
    spec = importlib.util.spec_from_file_location(
        "standin_base_image", REPO_ROOT / "scripts" / "standin_base_image.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.default_tag(platform))


def load_results(path: Path = RESULTS) -> dict[tuple[str, str], dict[str, Any]]:
    if not path.exists():
        return {}
    return {(item["name"], item["platform"]): item for item in json.loads(path.read_text())}


def save_results(
    results: Mapping[tuple[str, str], Mapping[str, Any]], path: Path = RESULTS
) -> None:
    ordered = [results[key] for key in sorted(results)]
    path.write_text(json.dumps(ordered, indent=1, sort_keys=True) + "\n")


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _mib(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f} MiB"


def short_cause(row: Mapping[str, Any]) -> str:
    """Where a run stopped, in a few words: the library check by its count, else the start."""
    message: str = row["message"]
    if not message:
        return ""
    found = re.search(r"cannot load (\d+) shared librar", message)
    if found:
        return f"{row['stage']}: library check, {found.group(1)} libraries"
    return f"{row['stage']}: {message if len(message) <= 140 else message[:137] + '...'}"


def as_expected(row: Mapping[str, Any], project: Project | None) -> str:
    if project is None:
        return ""
    return "yes" if row["outcome"] == project.expected_outcome else "**no**"


def write_page(
    results: Mapping[tuple[str, str], Mapping[str, Any]], projects: list[Project], path: Path = PAGE
) -> None:
    order = {project.name: index for index, project in enumerate(projects)}
    by_name = {project.name: project for project in projects}
    rows = sorted(results.values(), key=lambda r: (r["platform"], order.get(r["name"], 99)))
    dates = sorted({row["date"] for row in rows})
    commits = sorted({row["daskbox_commit"] for row in rows})
    built = [row for row in rows if row["outcome"] == "built"]
    expected = [row for row in rows if as_expected(row, by_name.get(row["name"])) == "yes"]
    lines = [
        "# Real projects",
        "",
        f"Results of `scripts/real_projects.py` on {', '.join(dates)} (UTC), daskbox "
        f"{', '.join(commits)}: **{len(built)} of {len(rows)}** builds made an image whose "
        f"installed set equals the export and whose main modules import; **{len(expected)} of"
        f" {len(rows)}** runs ended as expected.",
        "",
        "The corpus is `tests/real_projects/projects.toml`: public Poetry projects that daskbox's",
        "authors did not write, each pinned by commit (the manifest says why each is there).",
        "For each, the script clones the pinned snapshot, adopts daskbox as the README says",
        "(`distributed` and `psutil` into the main group when missing, then the README's",
        "`poetry add --group dev \"daskbox; python_version >= '3.10'\"` against this checkout's",
        "wheel, `tasks.py`, and the `[tool.daskbox]` the manifest gives), runs `invoke build`",
        "(no push) and checks the image: the distributions the image's Python sees against the",
        "image record's export and the `dev.daskbox.installed-digest` label, then imports the",
        "project's main modules with `docker run --rm --network host --entrypoint",
        "/opt/venv/bin/python IMAGE -c ...`. *Image* is the whole image (`docker image inspect`),",
        "*base* the base image, *venv* `du -sb /opt/venv` inside it; *build* is the wall clock of",
        "`invoke build` until it exited (a refusal included), with one daskbox cache for the run",
        "(wheels an earlier project fetched are reused), on a 2-core machine shared with others.",
        "",
        "Rerun: `nice -n 10 .venv/bin/python scripts/real_projects.py [--only NAME]"
        " [--platform linux/arm64]` (needs Docker, PyPI, the fetched snapshots and",
        "`.venv/bin/pip install /work/shared/poetry-simple-index`).",
        "",
        "*Expected* is what a correct daskbox does: `build`, `refuse` (with a one-line error"
        " naming the fix), or `fail`: the project's own code or lock fails whatever daskbox"
        " does, a documented expected failure (its finding below names the cause and the fix"
        " its owner would make).",
        "",
        "| project | platform | expected | result | as expected | stopped at (each error in full"
        " below) | installed set vs export | imports | image | base | venv | build |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        project = by_name.get(row["name"])
        name = (
            f"[{row['name']}](https://github.com/{project.repo}/tree/{project.commit})"
            if project
            else row["name"]
        )
        result = {
            "built": "**built**",
            "refused": "refused",
            "failed": "failed",
            "absent": "snapshot absent",
        }.get(row["outcome"], row["outcome"])
        stopped = short_cause(row)
        build = "" if row["build_seconds"] is None else f"{row['build_seconds']:.0f} s"
        lines.append(
            "| "
            + " | ".join(
                _cell(cell)
                for cell in (
                    name,
                    row["platform"],
                    project.expect if project else row["expect"],
                    result,
                    as_expected(row, project),
                    stopped,
                    row["installed_check"],
                    row["imports"],
                    _mib(row["image_mib"]),
                    _mib(row["base_mib"]),
                    _mib(row["venv_mib"]),
                    build,
                )
            )
            + " |"
        )
    library = [row for row in rows if "library check" in short_cause(row)]
    elsewhere = [row for row in rows if row["message"] and row not in library]
    lines += [
        "",
        f"Stopped by the shared-library check: {len(library)} of {len(rows)} runs"
        + (
            ": " + ", ".join(f"{row['name']} ({row['platform']})" for row in library)
            if library
            else ""
        )
        + ". Stopped elsewhere: "
        + (
            "; ".join(f"{row['name']} ({row['platform']}, {short_cause(row)})" for row in elsewhere)
            or "none"
        )
        + ".",
    ]
    still_open = [project for project in projects if project.open]
    if still_open:
        lines += ["", "## Open: daskbox's fault, not fixed yet", ""]
        lines += [f"- **{project.name}**: {project.open}" for project in still_open]
    findings = [project for project in projects if project.finding]
    if findings:
        lines += ["", "## Findings besides the library check", ""]
        lines += [f"- **{project.name}**: {project.finding}" for project in findings]
    lines += ["", "## What each project covers", ""]
    for project in projects:
        lines.append(
            f"- **{project.name}** (`{project.repo}` at `{project.commit[:12]}`"
            + (f", `{project.subdirectory}`" if project.subdirectory != "." else "")
            + f"): {'; '.join(project.covers)}. {project.why}"
        )
    failed = [row for row in rows if row["message"]]
    if failed:
        lines += ["", "## The one-line errors, exactly", ""]
        for row in failed:
            lines += [f"**{row['name']}** ({row['platform']}), at {row['stage']}:", "", "```"]
            lines += [row["message"], "```", ""]
        lines.pop()
    notes = [(row["name"], row["platform"], note) for row in rows for note in row["notes"]]
    if notes:
        lines += ["", "## Notes from the runs", ""]
        lines += [f"- {name} ({platform}): {_cell(note)}" for name, platform, note in notes]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


@contextlib.contextmanager
def working_folder(given: Path | None) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="daskbox-real-projects-") as folder:
        yield Path(folder)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[], metavar="NAME")
    parser.add_argument("--platform", default="linux/amd64", choices=["linux/amd64", "linux/arm64"])
    parser.add_argument("--base-image", help="default: daskbox's (arm64: the stand-in)")
    parser.add_argument("--mirror-dir", type=Path, action="append", default=[])
    parser.add_argument("--workdir", type=Path, help="keep clones and logs here")
    parser.add_argument("--keep-images", action="store_true")
    parser.add_argument("--no-page", action="store_true", help="print, do not write results")
    parser.add_argument("--page-only", action="store_true", help="rewrite the page, build nothing")
    options = parser.parse_args(argv)
    if options.page_only:
        write_page(load_results(), read_manifest())
        return 0

    try:
        importlib.metadata.version("poetry-simple-index")
    except importlib.metadata.PackageNotFoundError:
        print(
            "error: Poetry here needs the poetry-simple-index plugin: "
            f"{VENV_BIN / 'pip'} install /work/shared/poetry-simple-index",
            file=sys.stderr,
        )
        return 2
    projects = read_manifest()
    known = {project.name for project in projects}
    if unknown := sorted(set(options.only) - known):
        print(f"error: not in {MANIFEST.name}: {', '.join(unknown)}", file=sys.stderr)
        return 2
    chosen = (
        [p for p in projects if p.name in options.only]
        if options.only
        else [p for p in projects if options.platform == "linux/amd64" or p.arm64]
    )
    base_image = options.base_image or default_base(options.platform)
    mirror_dirs = [*options.mirror_dir, DEFAULT_MIRRORS]
    results = load_results()
    with working_folder(options.workdir) as workdir:
        # A new wheel, index and Poetry cache each run: Poetry caches a source's hashes by version.
        for previous in ("daskbox-index", "poetry-home"):
            shutil.rmtree(workdir / previous, ignore_errors=True)
        with serving_daskbox_index(workdir / "daskbox-index") as index:
            run_corpus(chosen, options, base_image, index, workdir, mirror_dirs, results)
    return 0


def run_corpus(
    chosen: Sequence[Project],
    options: argparse.Namespace,
    base_image: str | None,
    index: LocalIndex,
    workdir: Path,
    mirror_dirs: Sequence[Path],
    results: dict[tuple[str, str], dict[str, Any]],
) -> None:
    """Build each chosen project in turn, saving the results and the page after each."""
    projects = read_manifest()
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    commit = daskbox_commit()
    poetry_env = poetry_environ(workdir / "poetry-home")
    for project in chosen:
        print(f"[real-projects] {project.name} ({options.platform}) ...", flush=True)
        result = build_one(
            project,
            options.platform,
            base_image,
            index,
            poetry_env,
            workdir,
            mirror_dirs,
            options.keep_images,
        )
        result.date, result.daskbox_commit = today, commit
        print(
            f"[real-projects] {project.name}: {result.outcome}"
            + (f" at {result.stage}: {result.message}" if result.message else "")
            + (f" ({result.build_seconds:.0f} s)" if result.build_seconds else ""),
            flush=True,
        )
        results[(result.name, result.platform)] = asdict(result)
        if not options.no_page:
            # Reread first: a run for the other platform may have saved its rows meanwhile.
            results = {**load_results(), (result.name, result.platform): asdict(result)}
            save_results(results)
            write_page(results, projects)


if __name__ == "__main__":
    sys.exit(main())
