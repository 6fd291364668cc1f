"""images: export the locked Poetry environment into a hermetic Dockerfile, build it, push it.

plan = plan_image(Path("."))        # builds nothing: export, project wheels, Dockerfile, tag
build_image(plan); push_image(plan)
find_pushed(plan.reference)          # "repo@sha256:..." or None
"""

from daskbox.image_ref import ImageRef
from daskbox.images.environment import Environment, Platform, Requirement
from daskbox.images.pipeline import (
    BuildResult,
    ImagePlan,
    build_image,
    find_pushed,
    plan_image,
    push_image,
)

__all__ = [
    "BuildResult",
    "Environment",
    "ImagePlan",
    "ImageRef",
    "Platform",
    "Requirement",
    "build_image",
    "find_pushed",
    "plan_image",
    "push_image",
]
