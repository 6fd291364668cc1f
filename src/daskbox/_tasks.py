"""What every component's invoke tasks share: the error boundary and the progress type."""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from daskbox.errors import DaskboxError, InternalError, Interrupted

# Where long steps report progress: one human-readable line per call.
Progress = Callable[[str], None]


def internal_error(error: BaseException) -> InternalError:
    """``error`` (a bug) as one line: ``internal error: <type>: <message> (traceback in
    <file>)``, its traceback written to a new file in the temporary folder."""
    handle, name = tempfile.mkstemp(prefix="daskbox-traceback-", suffix=".txt")
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        stream.writelines(traceback.format_exception(error))
    message = " ".join(str(error).split()) or "(no message)"
    return InternalError(
        f"internal error: {type(error).__qualname__}: {message} (traceback in {name})"
    )


@contextmanager
def internal_errors() -> Iterator[None]:
    """The boundary of a library call such as ``connect()``: daskbox's own errors (and
    warnings turned into errors) pass, any other exception is a bug and becomes an
    ``InternalError`` (``internal_error``), chained to it."""
    try:
        yield
    except (DaskboxError, Warning):
        raise
    except Exception as error:
        raise internal_error(error) from error


@contextmanager
def one_line_errors(
    interrupted: str | Callable[[], str] = "interrupted: stopped before anything was made",
) -> Iterator[None]:
    """Turn a DaskboxError into one ``error: ...`` line on stderr and its exit code, and
    Ctrl-C into one ``interrupted: ...`` line and exit code 130.

    A step that knows what an interrupt leaves behind raises ``Interrupted`` with that
    line; anywhere else ``interrupted`` (or what it returns, when the answer depends on how
    far the task got) says it. Expected
    failures never show a traceback; anything else is a bug, said in one line too
    (``internal_error``: its type, message and the file holding its traceback), exit 1.
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
    except Exit:
        raise  # a task's own exit code (e.g. a failed build's), already said
    except BrokenPipeError:
        # Whoever read stdout went away (`| head`): stop quietly, as the shell's tools do,
        # with stdout on /dev/null so the interpreter's last flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise Exit(code=1) from None
    except Exception as error:
        raise Exit(f"error: {internal_error(error)}", code=InternalError.exit_code) from None
