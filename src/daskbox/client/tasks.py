"""The client's invoke task: ``invoke check``."""

from __future__ import annotations

from invoke.context import Context
from invoke.tasks import task

from daskbox._tasks import one_line_errors


@task(
    help={
        "instance": "the launched instance to check (default: the project's only one)",
        "path": "a connection file to use instead of <project>/.daskbox/<instance>.json",
    }
)
def check(c: Context, instance: str | None = None, path: str | None = None) -> None:
    """Check that the cluster runs the local environment; exit 1 listing any difference."""
    # Imported here so `invoke --list` does not pay for distributed.
    from daskbox.client.connect import connect

    with one_line_errors():
        connect(instance, path=path, strict=True).close()  # type: ignore[no-untyped-call]
