"""Project tasks: `invoke --list` shows daskbox's build, push, dockerfile, launch, ..."""

from daskbox.tasks import ns  # noqa: F401
