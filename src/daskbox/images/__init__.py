"""images: export the locked Poetry environment into a hermetic Dockerfile, build it, push it.

plan = plan_image(Path("."))        # builds nothing: export, project wheels, Dockerfile, tag
build_image(plan); push_image(plan)  # each writes the image record for launch and connect
find_pushed(plan.reference)          # "repo@sha256:..." or None

The names load lazily (PEP 562): importing a pure module of this package (the Dockerfile
template, the environment values) does not load the Docker SDK behind the pipeline.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "BuildResult": "daskbox.images.pipeline",
    "ImagePlan": "daskbox.images.pipeline",
    "build_image": "daskbox.images.pipeline",
    "find_pushed": "daskbox.images.pipeline",
    "plan_image": "daskbox.images.pipeline",
    "push_image": "daskbox.images.pipeline",
    "Environment": "daskbox.images.environment",
    "Platform": "daskbox.images.environment",
    "Requirement": "daskbox.images.environment",
    "ImageRef": "daskbox.image_ref",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'daskbox.images' has no attribute {name!r}")
