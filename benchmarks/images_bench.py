"""Images benchmarks for examples/quickstart, each against its floor, measured in one run.

Run:  .venv/bin/python benchmarks/images_bench.py [--repeat 3] [--src PATH] [--skip-arm64]
      [--steps 12345]

Works on a copy of examples/quickstart pushed to a throwaway docker-registry on
127.0.0.1:<free port> (no auth), with its own ``XDG_CACHE_HOME``. Times are wall-clock for
the user's command, ``invoke ...`` run in the project folder (Python start-up included).
``--src`` runs another checkout's daskbox (its ``src`` folder first on PYTHONPATH), to
measure "before" on main; the steps that need what it lacks are reported as skipped.

1. Cold build with cached wheels (no prepared layers, no Docker layer cache:
   ``invoke build --force``) against the floor: a host ``pip install --no-index`` of the
   same wheels into a venv plus a COPY-only ``docker build`` of it (target <= 1.2x).
2. arm64 against amd64, the same cold build of this wheel-only lock on this x86_64 machine
   (target <= 1.2x); needs the arm64 stand-in base (scripts/setup.sh).
3. ``invoke build --force push`` with nothing changed: bytes uploaded (target 0).
4. A code-only change, ``invoke build push``: bytes uploaded (target <= 1 MB).
5. No-op ``invoke build push`` (target <= 1 s), also with a git dependency added to the
   project (served from a local repository; needs ``POETRY`` pointing at a poetry that can
   lock here, default ``poetry``).
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import docker

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from daskbox_services import running_registry  # noqa: E402  (the tests' registry helper)

INVOKE = str(REPO / ".venv" / "bin" / "invoke")


def invoke(project: Path, env: dict[str, str], *args: str) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(
        [INVOKE, *args], cwd=project, env=env, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"invoke {' '.join(args)} failed: {done.stderr.strip()}")
    return elapsed, done.stdout


def uploaded_bytes(output: str) -> int:
    match = re.search(r"(\d+) bytes uploaded", output)
    return int(match.group(1)) if match else 0


def median(runs: list[float]) -> str:
    return f"{statistics.median(runs):6.2f} s (runs: {', '.join(f'{t:.2f}' for t in runs)})"


def copy_quickstart(scratch: Path, host: str) -> Path:
    """The quickstart at examples/quickstart of a tree whose root links to this repository's
    package, so its dev group's `path = "../.."` still resolves (for `poetry add`)."""
    tree = scratch / "tree"
    project = tree / "examples" / "quickstart"
    shutil.copytree(
        REPO / "examples" / "quickstart",
        project,
        ignore=shutil.ignore_patterns(".daskbox", "__pycache__"),
    )
    for name in ("pyproject.toml", "README.md", "src"):
        (tree / name).symlink_to(REPO / name)
    pyproject = project / "pyproject.toml"
    configured = 'repository = "localhost:5000/quickstart"'
    text = pyproject.read_text()
    pyproject.write_text(text.replace(configured, f'repository = "{host}/quickstart"'))
    return project


def forget_prepared(cache: Path) -> None:
    """Drop the prepared layers (a cold build makes them again); wheels and the base image's
    facts stay cached, as the base image itself does."""
    shutil.rmtree(cache / "daskbox" / "layers", ignore_errors=True)


def floor_build(project: Path, env: dict[str, str], scratch: Path, base: str) -> float:
    """A host `pip install --no-index` of the image's wheels into a venv, then a COPY-only
    `docker build` of that venv on the base: the least any builder can do."""
    wheels = sorted((Path(env["XDG_CACHE_HOME"]) / "daskbox" / "wheels").rglob("*.whl"))
    wheels += sorted((project / ".daskbox" / "cache" / "local-wheels").rglob("*.whl"))
    folder = scratch / "floor"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(folder / "venv")], check=True
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(folder / "venv" / "bin" / "python"),
            "install",
            "--quiet",
            "--no-index",
            "--no-deps",
            *map(str, wheels),
        ],
        check=True,
        env=env,
    )
    (folder / "Dockerfile").write_text(f"FROM {base}\nCOPY venv /opt/venv\n")
    subprocess.run(
        [
            "docker",
            "build",
            "--quiet",
            "--no-cache",
            "--network",
            "none",
            "-t",
            "daskbox-bench-floor:latest",
            str(folder),
        ],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def measure_cold(
    project: Path, env: dict[str, str], scratch: Path, repeat: int, base: str, supports_layers: bool
) -> None:
    cache = Path(env["XDG_CACHE_HOME"])
    ours, floors = [], []
    for _ in range(repeat):
        floors.append(floor_build(project, env, scratch, base))
        if supports_layers:
            forget_prepared(cache)
        ours.append(invoke(project, env, "build", "--force")[0])
    print(f"1. cold build, cached wheels:   daskbox {median(ours)}")
    print(
        f"   floor (pip --no-index + COPY): {median(floors)}"
        f"  -> {statistics.median(ours) / statistics.median(floors):.2f}x"
    )


def measure_arm64(project: Path, env: dict[str, str], repeat: int) -> None:
    client = docker.from_env()
    arm64 = next(
        (
            tag
            for image in client.images.list(name="python")
            for tag in image.tags
            if image.attrs["Architecture"] == "arm64"
        ),
        None,
    )
    if arm64 is None:
        print("2. arm64 vs amd64: skipped (no arm64 python base here: run scripts/setup.sh)")
        return
    cache = Path(env["XDG_CACHE_HOME"])
    arm64_build = ("build", "--platform", "linux/arm64", "--base-image", arm64)
    invoke(project, env, *arm64_build)  # its wheels are cached too, as amd64's are
    amd64, arm = [], []
    for _ in range(repeat):
        forget_prepared(cache)
        amd64.append(invoke(project, env, "build", "--force")[0])
        forget_prepared(cache)
        arm.append(invoke(project, env, *arm64_build, "--force")[0])
    print(f"2. cold build linux/arm64:       {median(arm)}")
    print(
        f"   cold build linux/amd64:       {median(amd64)}"
        f"  -> {statistics.median(arm) / statistics.median(amd64):.2f}x"
    )
    invoke(project, env, "build")  # the amd64 image is the newest build again


def measure_uploads(project: Path, env: dict[str, str], repeat: int) -> None:
    invoke(project, env, "build", "push")
    _, output = invoke(project, env, "build", "--force", "push")
    print(f"3. build --force push, nothing changed: {uploaded_bytes(output)} bytes uploaded")
    module = project / "src" / "quickstart" / "grid_search.py"
    changes = []
    for run in range(repeat):
        module.write_text(module.read_text() + f"\n# edit {run}\n")
        elapsed, output = invoke(project, env, "build", "push")
        changes.append((elapsed, uploaded_bytes(output)))
    print(
        f"4. code-only change build push: {median([t for t, _ in changes])}, "
        f"{max(b for _, b in changes)} bytes uploaded at most"
    )


def measure_noop(project: Path, env: dict[str, str], repeat: int, label: str) -> None:
    invoke(project, env, "build", "push")
    runs = [invoke(project, env, "build", "push")[0] for _ in range(repeat)]
    print(f"5. no-op build push{label}: {median(runs)}")


def add_git_dependency(project: Path, scratch: Path, env: dict[str, str]) -> str | None:
    """A small library in a local git repository, added with the user's poetry."""
    library = scratch / "gitlib"
    (library / "src" / "gitlib").mkdir(parents=True)
    (library / "src" / "gitlib" / "__init__.py").write_text("VALUE = 1\n")
    (library / "pyproject.toml").write_text(
        '[project]\nname = "gitlib"\nversion = "1.0"\nrequires-python = ">=3.10"\n'
        '[tool.poetry]\npackages = [{ include = "gitlib", from = "src" }]\n'
        '[build-system]\nrequires = ["poetry-core>=2.0"]\n'
        'build-backend = "poetry.core.masonry.api"\n'
    )
    git: Callable[..., object] = lambda *a: subprocess.run(  # noqa: E731
        ["git", "-C", str(library), "-c", "user.name=b", "-c", "user.email=b@b", *a],
        check=True,
        capture_output=True,
    )
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "lib")
    poetry = os.environ.get("POETRY", "poetry")
    added = subprocess.run(
        [poetry, "add", f"gitlib @ git+file://{library}"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if added.returncode != 0:
        return (added.stderr.strip().splitlines() or ["failed"])[-1]
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per measured step")
    parser.add_argument("--src", type=Path, help="another checkout's root: measure its daskbox")
    parser.add_argument("--skip-arm64", action="store_true", help="leave out step 2")
    parser.add_argument(
        "--steps", default="12345", help="which steps to run, e.g. 5 for the no-op only"
    )
    args = parser.parse_args()
    # An installed daskbox has its bytecode (written by the installer or on first import);
    # under PYTHONDONTWRITEBYTECODE every measured process would compile it from source.
    compileall.compile_dir((args.src.resolve() if args.src else REPO) / "src", quiet=1)
    client = docker.from_env()
    with (
        tempfile.TemporaryDirectory(prefix="daskbox-images-bench-") as scratch_name,
        running_registry(Path(scratch_name) / "registry") as registry,  # no auth needed
    ):
        scratch = Path(scratch_name)
        project = copy_quickstart(scratch, registry.host)
        (scratch / "docker-config").mkdir()
        env = {
            **os.environ,
            "DOCKER_CONFIG": str(scratch / "docker-config"),
            "XDG_CACHE_HOME": str(scratch / "cache"),
            "PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        if args.src:
            env["PYTHONPATH"] = str(args.src.resolve() / "src")
        supports_layers = (
            Path(env.get("PYTHONPATH", REPO / "src")) / "daskbox" / "images" / "layers.py"
        ).exists()
        repository = f"{registry.host}/quickstart"
        load = os.getloadavg()[0]
        print(f"daskbox from {env.get('PYTHONPATH', REPO / 'src')}; load average {load:.1f}")
        try:
            invoke(project, env, "build")  # downloads the wheels once: they are cached now
            base = client.images.get(f"{repository}:latest").labels[
                "org.opencontainers.image.base.name"
            ]
            if "1" in args.steps:
                measure_cold(project, env, scratch, args.repeat, base, supports_layers)
            if "2" not in args.steps:
                pass
            elif args.skip_arm64 or not supports_layers:
                print("2. arm64 vs amd64: skipped")
            else:
                measure_arm64(project, env, args.repeat)
            if "3" in args.steps or "4" in args.steps:
                measure_uploads(project, env, args.repeat)
            if "5" in args.steps:
                measure_noop(project, env, args.repeat, "")
                failed = add_git_dependency(project, scratch, env)
                if failed:
                    print(f"5. no-op build push with a git dependency: skipped ({failed})")
                else:
                    measure_noop(project, env, args.repeat, " with a git dependency")
        finally:
            for name in (repository, "daskbox-bench-floor", "daskbox-stages/quickstart"):
                for listed in client.images.list(name=name):
                    for tag in listed.tags:
                        client.images.remove(tag, force=True)
        print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
