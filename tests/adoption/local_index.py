"""daskbox's wheel, built from this checkout and served by a PEP 503 simple index on loopback.

daskbox is not on PyPI, so the adoption tests and the lock-footprint benchmark let Poetry
resolve it from here, like any other package from an index: `serving_daskbox_index` builds the
wheel with the project's own Poetry, writes ``simple/daskbox/index.html`` (sha256 and
Requires-Python on the link, as PyPI's simple pages have them) and serves the folder from an
``http.server`` thread on 127.0.0.1 at a free port.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.parser import HeaderParser
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
POETRY = Path(sys.executable).parent / "poetry"


@dataclass(frozen=True)
class DaskboxWheel:
    """A built daskbox wheel and what Poetry will lock for it."""

    path: Path
    version: str
    requires_python: str
    sha256: str


@dataclass(frozen=True)
class LocalIndex:
    """A running simple index holding exactly one project, daskbox."""

    url: str  # http://127.0.0.1:<port>/simple/
    wheel: DaskboxWheel


def build_daskbox_wheel(output: Path) -> DaskboxWheel:
    """Build this checkout's wheel into ``output`` with ``poetry build`` (no network needed)."""
    subprocess.run(
        [str(POETRY), "build", "--format", "wheel", "--output", str(output)],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    )
    (path,) = output.glob("daskbox-*.whl")
    with zipfile.ZipFile(path) as wheel:
        (metadata_name,) = (n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = HeaderParser().parsestr(wheel.read(metadata_name).decode())
    return DaskboxWheel(
        path=path,
        version=metadata["Version"],
        requires_python=metadata["Requires-Python"],
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
    )


def write_simple_index(wheel: DaskboxWheel, root: Path) -> None:
    """Lay out ``root/simple/`` as a PEP 503 index whose only project is daskbox."""
    project = root / "simple" / "daskbox"
    project.mkdir(parents=True)
    shutil.copy2(wheel.path, project / wheel.path.name)
    link = (
        f'<a href="{wheel.path.name}#sha256={wheel.sha256}"'
        f' data-requires-python="{html.escape(wheel.requires_python)}">{wheel.path.name}</a>'
    )
    (project / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{link}\n</body></html>\n")
    (root / "simple" / "index.html").write_text(
        '<!DOCTYPE html>\n<html><body>\n<a href="daskbox/">daskbox</a>\n</body></html>\n'
    )


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep Poetry's requests out of the test output."""


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Poetry first tries to read a wheel's metadata through HTTP range requests, and hangs
        # up on a server that sends the whole file instead; that is no error of the index.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def serving_daskbox_index(workdir: Path) -> Iterator[LocalIndex]:
    """Build the wheel, write the index under ``workdir`` and serve it until the block ends."""
    wheel = build_daskbox_wheel(workdir / "wheel")
    write_simple_index(wheel, workdir / "index")
    handler = partial(_QuietHandler, directory=str(workdir / "index"))
    server = _QuietServer(("127.0.0.1", 0), handler)  # port 0: a free port, no race
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LocalIndex(url=f"http://127.0.0.1:{server.server_address[1]}/simple/", wheel=wheel)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
