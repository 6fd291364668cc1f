"""Time `daskbox launch` / `teardown`: local target, and Compute Engine via the emulator.

    .venv/bin/python benchmarks/gcloud_bench.py [--rounds 3]

Self-contained: starts a loopback registry, builds and pushes the non_package fixture
project's image with `daskbox build push`, then launches and tears down in each round.
Prints wall-clock seconds per phase and how many gcloud processes each phase started
(counted by a wrapper in front of the real gcloud, polls included; gcloud starts slowly,
so that count is what to keep low).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "tests"), str(REPO_ROOT / "tests" / "gcloud")]

from emulator import ComputeEmulator  # noqa: E402

from daskbox_services import free_port, running_registry  # noqa: E402

DASKBOX = str(REPO_ROOT / ".venv" / "bin" / "daskbox")
FIXTURE = REPO_ROOT / "tests" / "fixtures" / "projects" / "non_package"


def _project(folder: Path, repository: str) -> Path:
    root = folder / "bench-project"
    shutil.copytree(FIXTURE, root)
    with (root / "pyproject.toml").open("a") as stream:
        stream.write(
            f'\n[tool.daskbox]\nrepository = "{repository}"\n\n[tool.daskbox.gcloud]\n'
            f'instance = "daskbox-gcloud-bench"\nscheduler-port = {free_port()}\n'
            f'dashboard-port = {free_port()}\nidle-timeout = "0"\ntimeout = 180\n'
            # The registry is on 127.0.0.1, which the emulated VM (this host) reaches.
            "allow-private-registry = true\n"
        )
    return root


def _counting_gcloud(folder: Path) -> tuple[Path, Path]:
    """A ``gcloud`` that counts its starts in a file, then runs the real one."""
    real = shutil.which("gcloud")
    if real is None:
        raise SystemExit("gcloud is not installed")
    bin_dir, counter = folder / "counting-bin", folder / "gcloud-starts"
    bin_dir.mkdir()
    wrapper = bin_dir / "gcloud"
    wrapper.write_text(f'#!/bin/sh\necho x >> "{counter}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    return bin_dir, counter


def _timed(root: Path, env: dict[str, str], counter: Path, *args: str) -> tuple[float, int]:
    counter.write_text("")
    start = time.perf_counter()
    result = subprocess.run([DASKBOX, *args], cwd=root, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"daskbox {' '.join(args)} failed: {result.stderr.strip()}")
    return elapsed, len(counter.read_text().split())


def emulator_env(folder: Path, bin_dir: Path, api_base: str) -> dict[str, str]:
    """gcloud against the emulator at ``api_base``: the counting gcloud first on PATH, then
    poetry (build's export) next to this interpreter; credentials disabled."""
    return {
        **os.environ,
        "PATH": os.pathsep.join(
            [str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]]
        ),
        "CLOUDSDK_CONFIG": str(folder / "gcloud"),
        "CLOUDSDK_CORE_PROJECT": "bench-project",
        "CLOUDSDK_AUTH_DISABLE_CREDENTIALS": "true",
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE": api_base,
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[float]] = {}
    calls: dict[str, int] = {}
    with (
        tempfile.TemporaryDirectory() as folder,
        running_registry(Path(folder, "registry")) as registry,
        ComputeEmulator(Path(folder, "emulator")) as emulator,
    ):
        repository = f"{registry.host}/daskbox-gcloud-bench"
        root = _project(Path(folder), repository)
        bin_dir, counter = _counting_gcloud(Path(folder))
        env = emulator_env(Path(folder), bin_dir, emulator.base)
        _timed(root, env, counter, "build", "push")
        try:
            for _ in range(args.rounds):
                for phase, argv in (
                    ("local launch", ("launch", "--local")),
                    ("local teardown", ("teardown", "--local")),
                    ("gce launch", ("launch", "--source-range", "192.0.2.1/32")),
                    ("gce teardown", ("teardown",)),
                ):
                    seconds, gcloud_calls = _timed(root, env, counter, *argv)
                    results.setdefault(phase, []).append(seconds)
                    calls[phase] = gcloud_calls
        finally:
            images = subprocess.run(
                ["docker", "images", "-q", repository], capture_output=True, text=True
            ).stdout.split()
            if images:
                subprocess.run(["docker", "rmi", "--force", *set(images)], capture_output=True)
    for phase, times in results.items():
        print(
            f"{phase:15s} median {statistics.median(times):6.2f} s  "
            f"min {min(times):6.2f} s  gcloud commands {calls[phase]}"
        )


if __name__ == "__main__":
    main()
