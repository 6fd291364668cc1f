"""The dashboard at a plain local URL: a forwarder that presents the launch's client certificate.

The cluster serves its dashboard only to clients holding the launch's certificate (see
``daskbox.entrypoint.dashboard``), which a browser does not have. ``DashboardForwarder``
listens on ``http://127.0.0.1:<port>`` and pipes each connection, byte for byte, to the
cluster's dashboard over mutual TLS with the certificate from the connection file: HTTP,
Bokeh's websockets and JupyterLab's dask-labextension all work through it, and the browser
sees a local ``http://`` page, so there is no certificate to accept.

Why a forwarder and not Google's IAP TCP forwarding (``gcloud compute start-iap-tunnel``):
IAP only reaches Compute Engine VMs, not the local target; it needs an IAP firewall rule and
the IAP-secured Tunnel User role; and it would bypass the dashboard's own certificate check
rather than use it. The forwarder works the same for both targets with what the connection
file already holds.

It listens on loopback only. Like any local port forward (``ssh -L``, IAP's tunnel), other
processes on this machine can reach it while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any

from daskbox.contract import DASHBOARD_PATH, LOOPBACK
from daskbox.errors import DaskboxError

__all__ = ["DashboardForwarder", "DashboardPortInUse", "served_dashboard_port"]

_CHUNK = 64 * 1024
_CONNECT_TIMEOUT = 10.0


class DashboardPortInUse(DaskboxError):
    """The local port the forwarder should listen on is taken."""


def served_dashboard_port(identity: dict[str, Any]) -> int | None:
    """The dashboard port the scheduler reports (its ``identity`` or ``scheduler_info``).

    Asked of the scheduler rather than read from the connection file, so the local URL
    always leads to the dashboard the scheduler really serves.
    """
    services = identity.get("services") or {}
    port = services.get("dashboard")
    return int(port) if port else None


def _bind(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:``port`` (0: any free port)."""
    try:
        return socket.create_server((LOOPBACK, port))
    except OSError as error:
        raise DashboardPortInUse(
            f"port {port} on {LOOPBACK} is in use ({error.strerror}), perhaps by another "
            "`invoke dashboard` or a notebook's connect(): pass --port N (0 picks a free one)"
        ) from None


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until ``reader`` ends, then pass the end on to ``writer``.

    A plain TCP end is half-closed, so the answer still flows back; TLS cannot half-close,
    so its connection is closed (else a browser's finished keep-alive connection would hold
    the cluster's end open until the server's idle timeout).
    """
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        else:
            writer.close()
    except (OSError, ssl.SSLError):
        pass  # the other side went away; closing both ends is all there is to do


class DashboardForwarder:
    """``http://127.0.0.1:<port>`` -> the cluster's dashboard over TLS, in a daemon thread."""

    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext | None) -> None:
        self.upstream = (host, port)
        self.ssl_context = ssl_context  # None: the cluster runs without TLS
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._open: set[asyncio.StreamWriter] = set()  # both ends of every open connection

    @property
    def url(self) -> str:
        """The local URL of the dashboard's status page."""
        if self.port is None:
            raise RuntimeError("the forwarder is not started")
        return f"http://{LOOPBACK}:{self.port}{DASHBOARD_PATH}"

    @property
    def upstream_url(self) -> str:
        """Where the forwarder sends each connection."""
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.upstream[0]}:{self.upstream[1]}{DASHBOARD_PATH}"

    def start(self, port: int, *, or_any_free: bool = False) -> str:
        """Listen on ``port`` (or any free port if it is taken and ``or_any_free``); the URL."""
        try:
            listener = _bind(port)
        except DashboardPortInUse:
            if not or_any_free:
                raise
            listener = _bind(0)
        self.port = int(listener.getsockname()[1])
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="daskbox-dashboard", daemon=True
        )
        self._thread.start()
        self._server = self._run(asyncio.start_server(self._forward, sock=listener)).result()
        return self.url

    def _run(self, coroutine: Coroutine[Any, Any, Any]) -> Future[Any]:
        assert self._loop is not None, "the forwarder is not started"
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = self.upstream
        try:
            upstream_reader, upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=self.ssl_context),
                _CONNECT_TIMEOUT,
            )
        except (OSError, ssl.SSLError, asyncio.TimeoutError) as error:
            await self._answer_unreachable(writer, error)
            return
        self._open.update((writer, upstream_writer))
        try:
            await asyncio.gather(_copy(reader, upstream_writer), _copy(upstream_reader, writer))
        finally:
            for stream in (upstream_writer, writer):
                self._open.discard(stream)
                stream.close()

    async def _answer_unreachable(self, writer: asyncio.StreamWriter, error: Exception) -> None:
        """A one-line page saying why, instead of a browser's empty response."""
        reason = str(error) or type(error).__name__
        body = (
            f"daskbox: the cluster's dashboard at {self.upstream_url} did not answer "
            f"({reason}): is the cluster running? (`invoke status`)\n"
        ).encode()
        writer.write(
            b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()

    def close(self) -> None:
        """Stop listening, cut open connections and end the thread (idempotent)."""
        if self._thread is None or self._loop is None:
            return
        with contextlib.suppress(RuntimeError, TimeoutError):
            self._run(self._shut()).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._thread = None
        if not self._loop.is_running():
            self._loop.close()

    async def _shut(self) -> None:
        if self._server is not None:
            self._server.close()
        # A websocket never ends by itself: cut every connection still being forwarded.
        for stream in list(self._open):
            stream.transport.abort()

    def wait(self) -> None:
        """Block the calling thread while the forwarder runs (Ctrl-C ends the wait)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)
