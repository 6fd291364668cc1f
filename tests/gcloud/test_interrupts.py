"""Ctrl-C at every step of a launch, then `invoke teardown`: nothing is left.

The interrupt is what a terminal sends: SIGINT to the whole process group (daskbox and the
gcloud it runs). It lands at each step boundary (right after each line launch prints,
before the next step starts) and, with a delay, inside the step that follows. Every
interrupt exits 130 with one line saying what was undone, what is left and the command
that deletes it; that command then leaves no instance, no rule and no container.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DASKBOX, daskbox
from daskbox.client.connection import connection_dir

# About a dozen partial launches and teardowns, each gcloud call a second or more.
pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(2400)]

CALLER = "203.0.113.7/32"


def _launch(project, env, image) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(DASKBOX), "launch", "--image", image, "--source-range", CALLER],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )


def _interrupt_after(process: subprocess.Popen[str], lines: int, delay: float) -> list[str]:
    """Read ``lines`` lines of output, wait ``delay`` s, send SIGINT to the group; return
    what was printed (None of the lines may be missing: the launch must get that far)."""
    assert process.stdout is not None
    seen: list[str] = []
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + 240
    while len(seen) < lines and time.monotonic() < deadline:
        if selector.select(timeout=1):
            line = process.stdout.readline()
            if not line:
                break
            seen.append(line.rstrip("\n"))
    time.sleep(delay)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
    return seen


def _full_launch_lines(project, env, image, emulator) -> int:
    """How many lines a launch that runs to the end prints (then tear it down)."""
    finished = daskbox(project, env, "launch", "--image", image, "--source-range", CALLER)
    daskbox(project, env, "teardown")
    assert emulator.instances == {} and emulator.firewalls == {}
    return len(finished.stdout.splitlines())


def test_sigint_at_every_step_then_teardown_leaves_nothing(project, vm_image, emulator, gcloud_env):
    image = vm_image.pinned
    total = _full_launch_lines(project, gcloud_env, image, emulator)
    outcomes = []
    # After each printed line (a step boundary), at once and a little into the next step.
    # (Before the first line Python is still starting up: its own SIGINT handling applies.)
    for lines in range(1, total):
        # Inside a step too where the steps take long: creating, and waiting for the boot.
        for delay in (0.0, 1.0) if lines <= 4 else (0.0,):
            process = _launch(project, gcloud_env, image)
            seen = _interrupt_after(process, lines, delay)
            stdout, stderr = process.communicate(timeout=120)
            if any(line.startswith("connection file: ") for line in seen + stdout.splitlines()):
                # Too late: the launch was done and said so (the signal then lands in invoke
                # or in Python's shutdown, with nothing left to stop); teardown deletes it.
                outcomes.append((lines, delay, "finished"))
            else:
                assert process.returncode == 130, (lines, delay, seen[-2:], stdout, stderr)
                lines_said = stderr.strip().splitlines()
                assert len(lines_said) == 1, (lines, delay, seen, stderr)
                [line] = lines_said
                assert line.startswith("interrupted"), line
                if "left" in line:
                    assert "invoke teardown --instance" in line, line
                outcomes.append((lines, delay, line.split(":")[0] + ": " + line.split(";")[0]))
            down = daskbox(project, gcloud_env, "teardown", check=False)
            assert down.returncode == 0, (lines, delay, down.stdout, down.stderr)
            assert emulator.instances == {}, (lines, delay, seen, stderr, down.stdout)
            assert emulator.firewalls == {}, (lines, delay, seen, stderr, down.stdout)
            assert emulator.containers() == [], (lines, delay)
            assert not list(connection_dir(project).glob("*.json")), (lines, delay)
    # The loop did reach every stage: before anything, while creating, while waiting.
    said = " ".join(outcome for *_, outcome in outcomes)
    assert "before anything was created" in said or "nothing was created" in said
    assert "while creating the firewall rules and the instance" in said
    assert "while waiting for" in said


def _interrupt_at(argv: list[str], cwd, env, prefix: str) -> tuple[int, str]:
    """Run ``argv``, SIGINT its process group once a line starts with ``prefix``."""
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(prefix):
            os.killpg(process.pid, signal.SIGINT)
            break
    _, stderr = process.communicate(timeout=120)
    return process.returncode, stderr


def test_an_interrupted_teardown_says_so_and_a_second_one_finishes(
    project, vm_image, emulator, gcloud_env
):
    emulator.boot = False  # a launch that stops after creating: enough to tear down
    daskbox(
        project,
        gcloud_env,
        "launch",
        "--image",
        vm_image.pinned,
        "--source-range",
        CALLER,
        "--timeout",
        "2",
        check=False,
    )
    assert emulator.instances and emulator.firewalls
    code, stderr = _interrupt_at([str(DASKBOX), "teardown"], project, gcloud_env, "$ gcloud")
    assert code == 130
    assert stderr.strip() == (
        "interrupted: teardown stopped; whatever it had not deleted is still recorded: run "
        "`invoke teardown` again"
    )
    daskbox(project, gcloud_env, "teardown")
    assert emulator.instances == {} and emulator.firewalls == {}
    assert not list(connection_dir(project).glob("*.json"))


def test_an_interrupted_build_says_what_is_left(cluster_image):
    """The shared task boundary gives build its own line (push's works the same way)."""
    from daskbox.images.tasks import INTERRUPTED_BUILD

    project = cluster_image.project
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    code, stderr = _interrupt_at(
        [str(DASKBOX), "build", "--force"], project, env, "daskbox: building "
    )
    assert code == 130
    *warnings, last = stderr.strip().splitlines()
    assert last == INTERRUPTED_BUILD
    # The fixture has no bokeh: build's one warning may come first, nothing else.
    assert all(line.startswith("warning: bokeh is not in the image") for line in warnings)
