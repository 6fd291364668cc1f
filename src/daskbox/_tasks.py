"""What every component's invoke tasks share: the error boundary and the progress type."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from daskbox.errors import DaskboxError

# Where long steps report progress: one human-readable line per call.
Progress = Callable[[str], None]


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn a DaskboxError into one ``error: ...`` line on stderr and its exit code.

    Expected failures never show a traceback; anything else is a bug and keeps its own.
    """
    try:
        yield
    except DaskboxError as error:
        # Imported here: connect() shares this module's Progress type, and importing
        # invoke would add ~70 ms to every fresh session's `from daskbox import connect`.
        from invoke.exceptions import Exit

        raise Exit(f"error: {error}", code=error.exit_code) from None
