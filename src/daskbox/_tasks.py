"""What every component's invoke tasks share: the error boundary and the progress type."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from daskbox.errors import DaskboxError, Interrupted

# Where long steps report progress: one human-readable line per call.
Progress = Callable[[str], None]


@contextmanager
def one_line_errors(
    interrupted: str | Callable[[], str] = "interrupted: stopped before anything was made",
) -> Iterator[None]:
    """Turn a DaskboxError into one ``error: ...`` line on stderr and its exit code, and
    Ctrl-C into one ``interrupted: ...`` line and exit code 130.

    A step that knows what an interrupt leaves behind raises ``Interrupted`` with that
    line; anywhere else ``interrupted`` (or what it returns, when the answer depends on how
    far the task got) says it. Expected
    failures never show a traceback; anything else is a bug and keeps its own.
    """
    # Imported here: connect() shares this module's Progress type, and importing
    # invoke would add ~70 ms to every fresh session's `from daskbox import connect`.
    from invoke.exceptions import Exit

    try:
        yield
    except Interrupted as error:
        raise Exit(str(error), code=error.exit_code) from None
    except DaskboxError as error:
        raise Exit(f"error: {error}", code=error.exit_code) from None
    except KeyboardInterrupt:
        line = interrupted if isinstance(interrupted, str) else interrupted()
        raise Exit(line, code=Interrupted.exit_code) from None
