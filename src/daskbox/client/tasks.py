"""The client's invoke task: ``invoke check``."""

from __future__ import annotations

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from daskbox.errors import DaskboxError


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

    try:
        client = connect(instance, path=path, strict=True)
    except DaskboxError as error:
        raise Exit(str(error), code=1) from None
    client.close()  # type: ignore[no-untyped-call]
