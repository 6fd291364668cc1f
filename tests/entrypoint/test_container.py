"""The entrypoint as PID 1 of a real container with CPU and memory limits."""

from __future__ import annotations

import re
import time

import pytest
from distributed import Client

from daskbox.entrypoint.limits import Reading, ResourceLimits, host_cpu_readings
from daskbox.entrypoint.settings import Overrides
from daskbox.entrypoint.sizing import plan_sizing
from daskbox_services import free_port

pytestmark = [pytest.mark.docker, pytest.mark.slow]

GIB = 2**30


@pytest.fixture(scope="module")
def entrypoint_image(fixture_image):
    return fixture_image.reference


def wait_for_log(container, pattern: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = container.logs().decode()
        if re.search(pattern, logs, re.MULTILINE):
            return logs
        container.reload()
        if container.status == "exited":
            break
        time.sleep(0.1)
    raise AssertionError(f"no log line matching {pattern!r}:\n{container.logs().decode()}")


def test_plan_follows_cgroup_limits_not_the_host(docker_client, entrypoint_image):
    scheduler_port, dashboard_port = free_port(), free_port()
    container = docker_client.containers.run(
        entrypoint_image,
        detach=True,
        name=f"daskbox-entrypoint-test-{scheduler_port}",
        network_mode="host",
        nano_cpus=1_500_000_000,  # --cpus 1.5
        mem_limit="3g",
        environment={
            "DASKBOX_SCHEDULER_PORT": str(scheduler_port),
            "DASKBOX_DASHBOARD_PORT": str(dashboard_port),
            # long enough never to fire here; loads the idle preload from the copied package
            "DASKBOX_IDLE_TIMEOUT": "1h",
        },
    )
    try:
        # What the plan must be: the host's CPUs and memory narrowed by the two limits.
        expected = plan_sizing(
            ResourceLimits(
                cpu_readings=(*host_cpu_readings(), Reading(1.5, "cgroup")),
                memory_readings=(Reading(3.0 * GIB, "cgroup"),),
            ),
            Overrides(),
        )
        logs = wait_for_log(container, r"^entrypoint \| scheduler listening at ")
        assert re.search(
            r"^entrypoint \| seen +cpus +1\.5 +cgroup v[12] cpu\.\S+  <- used$", logs, re.M
        )
        assert re.search(
            r"^entrypoint \| seen +memory +3\.00 GiB +cgroup v[12] memory\.\S+  <- used$",
            logs,
            re.M,
        )
        with Client(f"tcp://127.0.0.1:{scheduler_port}", timeout=30) as client:
            client.wait_for_workers(expected.workers, timeout=30)
            workers = client.scheduler_info(n_workers=-1)["workers"].values()
            assert len(workers) == expected.workers == 1
            assert {w["nthreads"] for w in workers} == {expected.threads_per_worker} == {2}
            assert {w["memory_limit"] for w in workers} == {expected.memory_per_worker}
            assert client.submit(sum, range(10)).result(timeout=30) == 45
            assert client.run_on_scheduler(__import__("os").getuid) != 0  # non-root user
        container.stop(timeout=10)  # SIGTERM to PID 1, SIGKILL after 10 s
        assert container.wait(timeout=15)["StatusCode"] == 0
        logs = container.logs().decode()
        assert "entrypoint | received SIGTERM: stopping" in logs
        assert logs.rstrip().endswith("entrypoint | stopped")
    finally:
        container.remove(force=True)
