"""Machine types -> CPU architecture -> the Container-Optimized OS image family that boots them.

Compute Engine names a predefined machine type ``<family>-<shape>-<vCPUs>`` (custom ones
``<family>-custom-...``, N1's ``custom-...``); the family decides the CPU. Google's Arm
families are listed here; every other family is x86_64. An arm64 machine boots
``cos-arm64-stable`` and can only run an image built for ``linux/arm64``. Pure.
"""

from __future__ import annotations

from daskbox import contract
from daskbox.errors import LaunchSpecError

# Google's Arm (Ampere Altra, Axion) machine families.
ARM64_FAMILIES = frozenset({"t2a", "c4a"})
COS_IMAGE_PROJECT = "cos-cloud"
COS_IMAGE_FAMILIES = {"linux/amd64": "cos-stable", "linux/arm64": "cos-arm64-stable"}


def machine_family(machine_type: str) -> str:
    """``t2a-standard-4`` -> ``t2a``; ``custom-4-8192`` (N1) -> ``n1``."""
    family = machine_type.split("-", 1)[0]
    return "n1" if family == "custom" else family


def machine_platform(machine_type: str) -> str:
    """The OCI platform a machine type runs natively: ``linux/arm64`` or ``linux/amd64``."""
    return "linux/arm64" if machine_family(machine_type) in ARM64_FAMILIES else "linux/amd64"


def cos_image_family(machine_type: str) -> str:
    """The ``cos-cloud`` image family that boots ``machine_type``."""
    return COS_IMAGE_FAMILIES[machine_platform(machine_type)]


def check_architecture(machine_type: str, image_platform: str) -> None:
    """Refuse an image the machine cannot run, naming both fixes."""
    machine = machine_platform(machine_type)
    if image_platform not in contract.PLATFORM_MACHINES:
        raise LaunchSpecError(
            f"the image's platform {image_platform!r} is not one daskbox launches: "
            f"build it for one of {', '.join(contract.PLATFORM_MACHINES)}"
        )
    if machine != image_platform:
        other = (
            "an Arm machine type such as t2a-standard-8 or c4a-standard-8"
            if (image_platform == "linux/arm64")
            else "an x86 machine type such as e2-highcpu-16"
        )
        raise LaunchSpecError(
            f"the image is built for {image_platform} but {machine_type} is a {machine} "
            f"machine: build the image for {machine} or launch on {other}"
        )
