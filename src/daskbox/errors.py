"""One error family. Every message names the file or value at fault and the fix.

Tasks turn any ``DaskboxError`` into one line on stderr and a non-zero exit; no
traceback is shown for an expected failure.
"""

from __future__ import annotations


class DaskboxError(Exception):
    """A failure the user can fix; ``str(error)`` is the one-line message."""

    exit_code: int = 1


class ConfigError(DaskboxError):
    """``[tool.daskbox]`` or a task flag holds a value daskbox cannot use."""


class LockfileError(DaskboxError):
    """poetry.lock is missing, stale, or cannot give the image's environment."""


class DockerfileError(DaskboxError):
    """The environment cannot be rendered into a hermetic Dockerfile."""


class ImageBuildError(DaskboxError):
    """The Docker engine is unreachable or the build failed."""


class MissingLibrariesError(ImageBuildError):
    """The image's compiled extensions need shared libraries it does not have; ``str()`` names
    at most three, ``everything`` all of them (``invoke build --verbose``)."""

    def __init__(self, message: str, everything: str) -> None:
        super().__init__(message)
        self.everything = everything


class DockerUnavailable(ImageBuildError):
    """The Docker engine (or, for the local target, the docker CLI) is not reachable."""


class ImageRecordError(DaskboxError):
    """No (usable) record of a built or pushed image for this project and platform."""


class PushError(DaskboxError):
    """The registry is unreachable, refused the credentials, or the name is invalid."""


class LaunchSpecError(DaskboxError):
    """Launch settings are invalid (zone, machine type, source range, ...)."""


class GcloudError(DaskboxError):
    """gcloud is missing, unauthenticated, or a gcloud command failed."""


class ConnectionFileError(DaskboxError):
    """The connection file is missing, unreadable, or of an unknown version."""


class EnvironmentMismatch(DaskboxError):
    """The cluster's Python environment differs from the local one."""


class ClusterUnreachable(DaskboxError):
    """The scheduler named in the connection file did not answer."""


class InternalError(DaskboxError):
    """A bug (an exception daskbox did not expect): its type and message, and the file
    holding its traceback, for a bug report."""


class Interrupted(DaskboxError):
    """Ctrl-C: the message says what happened, what is left and the command that deletes it."""

    exit_code = 130  # the shell's code for a process stopped by SIGINT


class EnvironmentMismatchWarning(UserWarning):
    """The cluster's environment differs (``strict=False``, or a worker that joined later)."""
