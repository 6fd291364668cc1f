"""The boot, as a VM reports it and launch reads it: guest attributes beside the cluster CA.

On the VM, the boot unit runs its image pull and its cluster (or workers) through
``cloud_init.BOOT_STEP_SCRIPT``, which publishes the step it is at (``boot-step``) and,
when the step fails, the last error line of its stderr (``boot-error``, the entrypoint's
own line when it wrote one) and then ``"<step> <exit code>"`` (``boot-exit``). Launch
reads the whole namespace in one query, so a ``boot-exit`` always comes with its line.

Two failures are final, so launch stops at once instead of waiting for its timeout: a
cluster that exited 2 (it refused its settings; systemd does not restart it) and an image
the pull gave up on (7 attempts over 4 minutes). Any other exit is restarted by systemd.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from daskbox import contract
from daskbox.errors import GcloudError
from daskbox.gcloud import commands
from daskbox.gcloud._gcloud import GcloudCommandError, parse_json, run_gcloud_all

STEP_PULL = "pull"
STEP_CLUSTER = "cluster"
STEP_WORKERS = "workers"


def published(argv: list[str], result: str | GcloudError) -> dict[str, str]:
    """key -> value of a ``get-guest-attributes`` answer; empty while nothing is published."""
    if isinstance(result, GcloudCommandError) and "was not found" in result.detail:
        return {}
    if isinstance(result, GcloudError):
        raise result
    items: list[dict[str, Any]] = parse_json(argv, result) or []
    return {str(item.get("key", "")): str(item.get("value", "")) for item in items}


class BootFailed(GcloudError):
    """A VM's boot ended in a failure it will not recover from."""


def boot_failure(vm: str, image: str, attributes: dict[str, str]) -> BootFailed | None:
    """The final failure the VM ``vm`` published, as the line launch prints; else None."""
    step, _, code = attributes.get(contract.GUEST_ATTRIBUTE_BOOT_EXIT, "").partition(" ")
    line = attributes.get(contract.GUEST_ATTRIBUTE_BOOT_ERROR, "").strip() or "no error output"
    if step == STEP_PULL:
        return BootFailed(f"{vm} could not pull the image {image}: {line}")
    if step in {STEP_CLUSTER, STEP_WORKERS} and code == str(contract.EXIT_BAD_SETTINGS):
        return BootFailed(f"the cluster on {vm} refused its settings: {line}")
    return None


class BootWatcher:
    """Watch the VMs' boot reports in a thread while launch waits for the scheduler:
    the scheduler VM's and, once ``group`` is set, each worker VM's."""

    PAUSE = 2.0

    def __init__(self, project: str, zone: str, instance: str, image: str) -> None:
        self.project, self.zone, self.instance, self.image = project, zone, instance, image
        self.group: str | None = None
        self.failure: BootFailed | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="daskbox-boot", daemon=True)

    def __enter__(self) -> BootWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def failed(self) -> bool:
        return self.failure is not None

    def check(self) -> None:
        """Raise the failure a VM reported, if one did (``give_up`` for the waits)."""
        if self.failure is not None:
            raise self.failure

    def _vms(self) -> list[str]:
        vms = [self.instance]
        if self.group is not None:
            argv = commands.group_instances(self.project, self.zone, self.group)
            [listed] = run_gcloud_all([argv], None)
            if isinstance(listed, str):
                members = parse_json(argv, listed) or []
                vms += [str(m.get("instance", "")).rsplit("/", 1)[-1] for m in members]
        return [vm for vm in vms if vm]

    def _run(self) -> None:
        while not self._stop.wait(self.PAUSE):
            vms = self._vms()
            argvs = [commands.boot_attributes(self.project, self.zone, vm) for vm in vms]
            for vm, argv, result in zip(vms, argvs, run_gcloud_all(argvs, None), strict=True):
                try:
                    failure = boot_failure(vm, self.image, published(argv, result))
                except GcloudError:  # a VM the group is replacing: the next poll sees
                    continue
                if failure is not None:
                    self.failure = failure
                    return


def give_up_on(watcher: BootWatcher) -> Callable[[], str | None]:
    """``give_up`` for ``poll``: raises the reported failure, never just stops."""

    def check() -> str | None:
        watcher.check()
        return None

    return check


__all__ = ["BootFailed", "BootWatcher", "boot_failure", "published"]
