"""Images benchmarks for examples/quickstart: cold build, no-op and code-only ``build push``.

Run:  .venv/bin/python benchmarks/images_bench.py [--repeat 3]

Works on a copy of examples/quickstart pushed to a throwaway docker-registry on
127.0.0.1:<free port> (no auth), with an empty wheel cache for the cold build. Times are
wall-clock for the user's command, ``invoke build push`` run in the project folder (Python
start-up included). Needs the Docker engine and the base image python:<local>-slim-bookworm.

1. Cold build + push: empty host wheel cache, no Docker layer cache (``build --force``).
2. No-op ``invoke build push``: nothing changed (target < 1.5 s).
3. Code-only change ``invoke build push``: one line of the project's module edited
   (target < 5 s and < 1 MB uploaded).
4. Size: the image against the floor, base image + installed venv (target within 5%).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from daskbox_services import running_registry  # noqa: E402  (the tests' registry helper)

INVOKE = REPO / ".venv" / "bin" / "invoke"


def build_push(project: Path, env: dict[str, str], *build_flags: str) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(
        [str(INVOKE), "build", *build_flags, "push"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"invoke build push failed: {done.stderr.strip()}")
    return elapsed, done.stdout


def uploaded_bytes(output: str) -> int:
    match = re.search(r"(\d+) bytes uploaded", output)
    return int(match.group(1)) if match else 0


def copy_quickstart(scratch: Path, host: str) -> Path:
    project = scratch / "quickstart"
    shutil.copytree(
        REPO / "examples" / "quickstart",
        project,
        ignore=shutil.ignore_patterns(".daskbox", "__pycache__"),
    )
    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(
            'repository = "localhost:5000/quickstart"', f'repository = "{host}/quickstart"'
        )
    )
    return project


def measure(project: Path, env: dict[str, str], repeat: int, client: docker.DockerClient) -> None:
    cold, output = build_push(project, env, "--force")
    print(f"cold build + push:          {cold:6.2f} s   ({uploaded_bytes(output)} bytes)")

    noops = [build_push(project, env)[0] for _ in range(repeat)]
    print(
        f"no-op build push:           {statistics.median(noops):6.2f} s   "
        f"(median of {len(noops)}: {', '.join(f'{t:.2f}' for t in noops)})"
    )

    module = project / "src" / "quickstart" / "grid_search.py"
    changes = []
    for run in range(repeat):
        module.write_text(module.read_text() + f"\n# edit {run}\n")
        elapsed, output = build_push(project, env)
        changes.append((elapsed, uploaded_bytes(output)))
    times = [t for t, _ in changes]
    print(
        f"code-only change build push: {statistics.median(times):5.2f} s   "
        f"(median of {len(times)}: {', '.join(f'{t:.2f}' for t in times)}; "
        f"uploaded {max(b for _, b in changes)} bytes at most)"
    )

    image = client.images.get(f"{env['BENCH_REPOSITORY']}:latest")
    base = client.images.get(image.labels["org.opencontainers.image.base.name"])
    du = client.containers.run(
        image.id, entrypoint=["du", "-sb", "/opt/venv"], remove=True, network_mode="none"
    )
    venv = int(du.decode().split()[0])
    floor = base.attrs["Size"] + venv
    size = image.attrs["Size"]
    print(
        f"image size:                 {size / 1e6:7.1f} MB = {size / floor:.3f} x floor "
        f"(base {base.attrs['Size'] / 1e6:.1f} MB + venv {venv / 1e6:.1f} MB "
        f"= {floor / 1e6:.1f} MB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per measured step")
    args = parser.parse_args()
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
            "XDG_CACHE_HOME": str(scratch / "cache"),  # empty wheel cache: a cold build
            "BENCH_REPOSITORY": f"{registry.host}/quickstart",
        }
        try:
            measure(project, env, args.repeat, client)
        finally:
            for listed in client.images.list(name=env["BENCH_REPOSITORY"]):
                for tag in listed.tags:
                    client.images.remove(tag, force=True)


if __name__ == "__main__":
    main()
