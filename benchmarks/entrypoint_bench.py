"""Entrypoint benchmarks: startup time and throughput under different sizing plans.

Run:  .venv/bin/python benchmarks/entrypoint_bench.py [--repeat 5] [--rounds 3] [--skip-docker]

1. Startup: seconds from starting ``python -m daskbox.entrypoint`` (and from invoking
   ``docker run`` on a fixture project's image built by the pipeline) until a client sees every
   planned worker; compared with the bare ``dask scheduler`` + ``dask worker --nworkers``
   CLIs started the same way.
2. Throughput: a pure-Python CPU-bound batch and a numpy batch under daskbox's default
   plan, dask's own ``dask worker --nworkers auto`` plan, one worker per core with one
   thread, and one worker with a thread per core.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from distributed import Client

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from daskbox.contract import ENV_DASHBOARD_PORT, ENV_SCHEDULER_PORT  # noqa: E402
from daskbox.entrypoint.limits import read_limits  # noqa: E402
from daskbox.entrypoint.settings import read_settings  # noqa: E402
from daskbox.entrypoint.sizing import plan_sizing  # noqa: E402
from daskbox_services import free_port  # noqa: E402
from entrypoint.cluster import entrypoint_environ  # noqa: E402
from pipeline_image import build_fixture_image  # noqa: E402

TASKS = 40


def _wait_for_workers(address: str, workers: int, timeout: float = 60) -> Client:
    """Connect as soon as the scheduler's port answers, then wait for ``workers``."""
    host, port = address.rsplit("/", 1)[-1].rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)
    client = Client(address, timeout=timeout)
    client.wait_for_workers(workers, timeout=timeout)
    return client


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def entrypoint_cluster(**settings: str) -> Iterator[tuple[Client, float]]:
    """The entrypoint on this host; yields a client and the seconds until all workers joined."""
    environ = entrypoint_environ(**settings)
    port = environ[ENV_SCHEDULER_PORT]
    expected = plan_sizing(read_limits(), read_settings(environ).overrides)
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "daskbox.entrypoint"],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = _wait_for_workers(f"tcp://127.0.0.1:{port}", expected.workers)
        elapsed = time.monotonic() - started
        with client:
            yield client, elapsed
    finally:
        _stop(process)


@contextlib.contextmanager
def bare_dask_cluster(
    *worker_args: str, workers: int, processes: int = 1
) -> Iterator[tuple[Client, float]]:
    """``dask scheduler`` + ``processes`` ``dask worker`` processes, as dask's docs start them."""
    port = free_port()
    dask = str(Path(sys.executable).parent / "dask")
    environ = entrypoint_environ()  # its DASKBOX_* ports mean nothing to bare dask
    started = time.monotonic()
    scheduler = subprocess.Popen(
        [dask, "scheduler", "--port", str(port), "--dashboard-address", f":{free_port()}"],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker_processes = [
        subprocess.Popen(
            [dask, "worker", f"tcp://127.0.0.1:{port}", *worker_args],
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(processes)
    ]
    try:
        client = _wait_for_workers(f"tcp://127.0.0.1:{port}", workers)
        elapsed = time.monotonic() - started
        with client:
            yield client, elapsed
    finally:
        for worker in worker_processes:
            _stop(worker)
        _stop(scheduler)


def docker_startup(image: str) -> float:
    """Seconds from ``docker run`` to all planned workers connected, limits as on a VM."""
    port = free_port()
    name = f"daskbox-entrypoint-bench-{port}"
    started = time.monotonic()
    subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "--rm",
            "--name",
            name,
            "--network",
            "host",
            "-e",
            f"{ENV_SCHEDULER_PORT}={port}",
            "-e",
            f"{ENV_DASHBOARD_PORT}={free_port()}",
            image,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    try:
        expected = plan_sizing(read_limits(), read_settings({}).overrides)
        with _wait_for_workers(f"tcp://127.0.0.1:{port}", expected.workers):
            return time.monotonic() - started
    finally:
        subprocess.run(["docker", "stop", "-t", "10", name], check=False, stdout=subprocess.DEVNULL)


def pure_python_task(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def numpy_task(seed: int) -> float:
    import numpy as np

    rng = np.random.default_rng(seed)
    matrix = rng.random((600, 600))
    return float(np.linalg.eigvalsh(matrix @ matrix.T).max() + np.sort(rng.random(2_000_000))[0])


def batch_seconds(client: Client, task: Callable[[int], object], arguments: list[int]) -> float:
    client.gather(client.map(task, arguments[:4], pure=False))  # warm up imports
    started = time.monotonic()
    client.gather(client.map(task, arguments, pure=False))
    return time.monotonic() - started


def _summary(samples: list[float]) -> str:
    median, low, high = statistics.median(samples), min(samples), max(samples)
    return f"median {median:.2f} s (min {low:.2f}, max {high:.2f}, n={len(samples)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds per plan")
    parser.add_argument("--skip-docker", action="store_true")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    default = plan_sizing(read_limits(), read_settings({}).overrides)
    print(
        f"machine: {cores} CPUs, load average {os.getloadavg()[0]:.1f} at start; default plan: "
        f"{default.workers} workers x {default.threads_per_worker} threads\n"
    )

    print("startup (process start -> all workers connected)")
    n, threads = str(default.workers), str(default.threads_per_worker)
    variants: dict[str, Callable[[], contextlib.AbstractContextManager[tuple[Client, float]]]] = {
        "python -m daskbox.entrypoint": entrypoint_cluster,
        "  same, nannies start workers by spawn": lambda: entrypoint_cluster(
            DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD="spawn"
        ),
        f"bare dask scheduler + 1 dask worker --nworkers {n}": lambda: bare_dask_cluster(
            "--nworkers", n, "--nthreads", threads, workers=default.workers
        ),
        f"bare dask scheduler + {n} dask worker processes": lambda: bare_dask_cluster(
            "--nthreads", threads, workers=default.workers, processes=default.workers
        ),
    }
    startup: dict[str, list[float]] = {label: [] for label in variants}
    for _ in range(args.repeat):  # interleaved, so a busy moment does not hit one variant only
        for label, start in variants.items():
            with start() as (_, seconds):
                startup[label].append(seconds)
    for label, samples in startup.items():
        print(f"  {label:<48} {_summary(samples)}")
    if not args.skip_docker and shutil.which("docker"):
        with tempfile.TemporaryDirectory() as workdir:
            # Built by daskbox's own pipeline (cached by content tag across runs).
            image = build_fixture_image(Path(workdir), "daskbox-bench/entrypoint").reference
        samples = [docker_startup(image) for _ in range(args.repeat)]
        print(f"  {'docker run (a fixture project image)':<48} {_summary(samples)}")

    print(f"\nthroughput ({TASKS} tasks per batch, wall seconds, lower is better)")
    pure_arguments = [2_000_000] * TASKS
    numpy_arguments = list(range(TASKS))
    plans: dict[str, Callable[[], contextlib.AbstractContextManager[tuple[Client, float]]]] = {
        f"daskbox default ({default.workers}x{default.threads_per_worker})": entrypoint_cluster,
        "dask --nworkers auto": lambda: bare_dask_cluster(
            "--nworkers", "auto", workers=_auto_workers(cores)
        ),
        f"one per core, 1 thread ({cores}x1)": lambda: entrypoint_cluster(
            NUM_WORKERS=str(cores), THREADS_PER_WORKER="1"
        ),
        f"one worker, thread per core (1x{cores})": lambda: entrypoint_cluster(
            NUM_WORKERS="1", THREADS_PER_WORKER=str(cores)
        ),
    }
    pure: dict[str, list[float]] = {label: [] for label in plans}
    numeric: dict[str, list[float]] = {label: [] for label in plans}
    for _ in range(args.rounds):  # interleaved, so a busy moment does not hit one plan only
        for label, start in plans.items():
            with start() as (client, _):
                pure[label].append(batch_seconds(client, pure_python_task, pure_arguments))
                numeric[label].append(batch_seconds(client, numpy_task, numpy_arguments))
    for label in plans:
        print(
            f"  {label:<36} pure Python {statistics.median(pure[label]):6.2f} s   "
            f"numpy {statistics.median(numeric[label]):6.2f} s"
        )
    print(
        f"\nload average {os.getloadavg()[0]:.1f} at the end (other work on the machine skews all)"
    )


def _auto_workers(cores: int) -> int:
    from distributed.deploy.utils import nprocesses_nthreads

    return nprocesses_nthreads(cores)[0]


if __name__ == "__main__":
    main()
