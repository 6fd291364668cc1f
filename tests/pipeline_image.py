"""Images for the tests, built by daskbox's own pipeline from a fixture project.

No test writes an image Dockerfile by hand: what a test runs is what ``invoke build`` makes
(the entrypoint, the contract module, the non-root user and the labels included), and
the test reads what it needs from the image record the build hands over.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from daskbox.images.pipeline import ImagePlan, build_image, plan_image, push_image
from daskbox.record import ImageRecord, read_record

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "projects"
# distributed, a platform-marked dependency on each side, and an extra: enough for every
# test that runs an image, in one build per session.
CLUSTER_FIXTURE = "extras_groups_markers"
CLUSTER_EXTRAS = ("tables",)


@dataclass(frozen=True)
class PipelineImage:
    """A built (maybe pushed) fixture image and the project it was built from."""

    project: Path
    plan: ImagePlan
    record: ImageRecord

    @property
    def reference(self) -> str:
        """``repository:content-tag``."""
        return self.plan.reference

    @property
    def pinned(self) -> str:
        """``repository@sha256:...`` (pushed images only)."""
        assert self.record.pinned is not None, f"{self.reference} was not pushed"
        return self.record.pinned

    @property
    def lock_hash(self) -> str:
        return self.record.lock_hash


def _quiet(_: str) -> None:
    pass


def build_fixture_image(
    workdir: Path,
    repository: str,
    *,
    fixture: str = CLUSTER_FIXTURE,
    extras: tuple[str, ...] = CLUSTER_EXTRAS,
    push: bool = False,
) -> PipelineImage:
    """Copy ``fixture`` into ``workdir``, build it (and push it) through the pipeline."""
    project = workdir / fixture
    if not project.exists():
        shutil.copytree(FIXTURES / fixture, project, ignore=shutil.ignore_patterns(".daskbox"))
    plan = plan_image(project, {"repository": repository, "extras": list(extras)})
    build_image(plan, progress=_quiet)
    if push:
        push_image(plan, progress=_quiet)
    record = read_record(project, plan.environment.target.oci)
    return PipelineImage(project, plan, record)
