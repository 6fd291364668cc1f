"""Everything a launch can get wrong, checked before anything is created, on both targets.

* The entrypoint's settings (workers, threads, memory per worker, idle timeout, ports) go
  through ``daskbox.entrypoint.settings.read_settings``, the very code the container runs,
  on the environment the container will get: a value the cluster would refuse with exit
  code 2 is refused here, named by its flag.
* Durations, labels and names were checked while the settings were resolved
  (``settings.validate_settings``).
* For a VM: the image's architecture against the machine type's, and whether the VM can
  pull the image at all (``registry``); then, from the machine type's CPUs and memory in
  the catalogue gcloud reads, the sizing plan the entrypoint would make on it
  (``check_machine_fits``), so a count of workers the VM cannot hold is refused here.
"""

from __future__ import annotations

from collections.abc import Mapping

from daskbox import contract
from daskbox.entrypoint.limits import Reading, ResourceLimits
from daskbox.entrypoint.settings import SettingsError, read_settings
from daskbox.entrypoint.sizing import plan_sizing
from daskbox.errors import LaunchSpecError
from daskbox.gcloud.machines import check_architecture
from daskbox.gcloud.registry import (
    anonymous_pull,
    check_vm_can_pull,
    is_google_registry,
    registry_host,
)
from daskbox.gcloud.settings import LaunchSettings
from daskbox.gcloud.spec import LaunchImage, entrypoint_env

# The entrypoint's variable -> the launch flag that sets it.
_FLAGS = {
    contract.ENV_WORKERS: "--workers",
    contract.ENV_THREADS_PER_WORKER: "--threads-per-worker",
    contract.ENV_MEMORY_PER_WORKER: "--memory-per-worker",
    contract.ENV_IDLE_TIMEOUT: "--idle-timeout",
    contract.ENV_ORPHAN_TIMEOUT: "[tool.daskbox.gcloud] orphan-timeout",
    contract.ENV_SCHEDULER_PORT: "--scheduler-port",
    contract.ENV_DASHBOARD_PORT: "--dashboard-port",
}


def _in_flag_names(error: SettingsError, prefix: str = "") -> LaunchSpecError:
    """The entrypoint's message with its variables named by the launch flags that set them."""
    message = str(error)
    for variable, flag in _FLAGS.items():
        for after in ("=", " ", ":"):
            message = message.replace(f"{variable}{after}", f"{flag}{after}")
    return LaunchSpecError(prefix + message)


def check_entrypoint_settings(env: Mapping[str, str]) -> None:
    """Refuse what the container's entrypoint would refuse, in the flags' own names."""
    try:
        read_settings(env)
    except SettingsError as error:
        raise _in_flag_names(error) from None


def check_machine_fits(
    env: Mapping[str, str], machine_type: str, cpus: float, memory_mb: int
) -> None:
    """Refuse settings the entrypoint's sizing plan would refuse on ``machine_type``, given
    its CPUs and memory from the catalogue. A VM has a little less (the OS keeps some), so
    this refuses what surely fails; the entrypoint still checks the rest at boot."""
    source = f"machine type {machine_type}"
    limits = ResourceLimits((Reading(cpus, source),), (Reading(memory_mb * 2**20, source),))
    try:
        plan_sizing(limits, read_settings(env).overrides)
    except SettingsError as error:
        raise _in_flag_names(error, f"{machine_type} cannot hold these settings: ") from None


def check_launch(settings: LaunchSettings, image: LaunchImage, *, local: bool) -> None:
    """Every pre-flight check that needs no network (both targets)."""
    check_entrypoint_settings(dict(entrypoint_env(settings)))
    if not local:
        check_architecture(settings.machine_type, image.platform)
        if settings.worker_vms and settings.worker_machine_type:
            # One image for every VM: the worker VMs' machine must run it too.
            check_architecture(settings.worker_machine_type, image.platform)
        check_vm_can_pull(
            image.reference,
            settings.scopes,
            allow_private_registry=settings.allow_private_registry,
        )


def check_registry_serves_vm(image: LaunchImage) -> str | None:
    """For a registry other than Google's: refuse one that wants credentials (the VM has
    none for it); return a warning when it cannot be asked from here. Needs the network."""
    host = registry_host(image.reference)
    if is_google_registry(host):
        return None
    answer = anonymous_pull(image.reference)
    if answer == "missing":
        raise LaunchSpecError(
            f"image {image.reference} is not in the registry ({host} answered 404, manifest "
            "unknown): push it, `invoke build push`, or pass an --image that is there"
        )
    if answer == "needs-credentials":
        raise LaunchSpecError(
            f"the VM cannot pull {image.reference}: {host} does not serve it without "
            "credentials, and a VM gets credentials only for Artifact Registry: push the "
            "image to Artifact Registry, or make the repository public"
        )
    if answer == "unreachable":
        return (
            f"warning: could not ask {host} from here whether it serves the image without "
            "credentials; the VM will try"
        )
    return None
