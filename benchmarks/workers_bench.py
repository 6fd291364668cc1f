"""Worker VMs on the Compute Engine emulator: one VM against one VM plus 2 worker VMs.

    .venv/bin/python benchmarks/workers_bench.py [--repeat 3] [--worker-vms 2]

Self-contained like gcloud_bench.py: a loopback registry, the non_package fixture's image
(`daskbox build push`), the emulator. For each layout it times `daskbox launch` (and how
many gcloud processes it started), then, through the launch's TLS client, the rate of
tiny tasks (2000 no-op tasks, submitted and gathered) and a CPU-bound batch (48 tasks of
pure-Python arithmetic), then `daskbox teardown`.

Every emulated VM is a container on this host: they all share its CPUs, so 1 + 2 VMs do
not compute faster than 1. The ratio measures what the extra VMs cost (more processes
competing, transfers and heartbeats over TLS between VMs), not a speed-up.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from gcloud_bench import _counting_gcloud, _project, _timed, emulator_env

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "tests"), str(REPO_ROOT / "tests" / "gcloud")]

from distributed import Client  # noqa: E402
from emulator import ComputeEmulator  # noqa: E402

from daskbox.client.connection import connection_path, read_connection_file  # noqa: E402
from daskbox_services import running_registry  # noqa: E402

TINY_TASKS = 2000
BATCH_TASKS = 48


def _by_value() -> tuple[Callable[[int], int], Callable[[int], int]]:
    # Shipped by value: the cluster cannot import this script.
    def noop(x: int) -> int:
        return x

    def burn(x: int) -> int:
        total = 0
        for i in range(1_500_000):
            total += (i * x) % 7
        return total

    return noop, burn


noop, burn = _by_value()


def _measure(client: Client, repeat: int) -> tuple[float, float]:
    """(tasks per second for tiny tasks, seconds for the CPU-bound batch), medians."""
    rates, batches = [], []
    client.gather(client.map(burn, range(4), pure=False))  # warm every worker
    for _ in range(repeat):
        start = time.perf_counter()
        client.gather(client.map(noop, range(TINY_TASKS), pure=False))
        rates.append(TINY_TASKS / (time.perf_counter() - start))
        start = time.perf_counter()
        client.gather(client.map(burn, range(BATCH_TASKS), pure=False))
        batches.append(time.perf_counter() - start)
    return statistics.median(rates), statistics.median(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--worker-vms", type=int, default=2)
    args = parser.parse_args()
    rows = []
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
            for vms in (0, args.worker_vms):
                launch = (
                    "launch",
                    "--source-range",
                    "192.0.2.1/32",
                    "--timeout",
                    "600",
                    "--worker-vms",
                    str(vms),
                )
                launched, calls = _timed(root, env, counter, *launch)
                connection = read_connection_file(connection_path(root, "daskbox-gcloud-bench"))
                with Client(
                    connection.scheduler_address, security=connection.tls.security(), timeout=30
                ) as client:
                    workers = len(client.scheduler_info()["workers"])
                    rate, batch = _measure(client, args.repeat)
                torn, _ = _timed(root, env, counter, "teardown")
                rows.append((vms, workers, launched, calls, rate, batch, torn))
        finally:
            images = subprocess.run(
                ["docker", "images", "-q", repository], capture_output=True, text=True
            ).stdout.split()
            if images:
                subprocess.run(["docker", "rmi", "--force", *set(images)], capture_output=True)
    print(
        f"{'layout':18s} {'workers':>7s} {'launch':>9s} {'gcloud':>6s} "
        f"{'tiny tasks/s':>12s} {'CPU batch':>10s} {'teardown':>9s}"
    )
    for vms, workers, launched, calls, rate, batch, torn in rows:
        layout = "1 VM" if vms == 0 else f"1 + {vms} worker VMs"
        print(
            f"{layout:18s} {workers:7d} {launched:8.2f}s {calls:6d} {rate:12.0f} "
            f"{batch:9.2f}s {torn:8.2f}s"
        )
    base, grown = rows[0], rows[-1]
    print(
        f"ratio (1 + {grown[0]} VMs / 1 VM): tiny tasks/s {grown[4] / base[4]:.2f}x, "
        f"CPU batch time {grown[5] / base[5]:.2f}x, launch time {grown[2] / base[2]:.2f}x"
    )


if __name__ == "__main__":
    main()
