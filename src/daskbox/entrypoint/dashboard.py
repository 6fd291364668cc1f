"""Scheduler preload: the dashboard, for the launch's own clients only, where it was asked for.

distributed serves its dashboard over HTTPS when given a certificate, but asks browsers for
none: anyone who reaches the port reads the logs, the call stacks (with the user's function
names) and the event stream. Its TLS context is made and its port bound inside
``Scheduler.__init__``, before any preload runs, with no setting for client certificates.
So the entrypoint has distributed bind its own server on a loopback port nobody is told
about, and this preload (``dask scheduler --preload daskbox.entrypoint.dashboard``) serves
the same application on the real address with the scheduler's own TLS context
(``Security.get_listen_args``): the same CA and server certificate as the scheduler's
``tls://`` port, and a client certificate required at the handshake. Then it stops
distributed's server. It all happens in one step of the event loop, right after the
scheduler file is written, so nothing sees the dashboard anywhere else.

It also replaces the ``/eventstream`` handler, whose scheduler plugin outlives any request
that is not a websocket (see ``OpenedEventstreamHandler``), and it fails loudly when the
port is taken instead of moving to another one as distributed does.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from distributed.diagnostics.websocket import WebsocketPlugin
from distributed.http.scheduler.info import EventstreamHandler
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from daskbox.contract import DASHBOARD_PATH, ENV_SERVE_DASHBOARD

logger = logging.getLogger("distributed.scheduler")

# distributed's old server, closing in the background (a reference keeps the task alive).
_closing: set[asyncio.Task[None]] = set()


class OpenedEventstreamHandler(EventstreamHandler):
    """``/eventstream`` that adds its scheduler plugin only once the websocket is open.

    distributed's handler adds the plugin in ``initialize``, which runs for every request.
    A plain GET is refused (400, not a websocket upgrade), ``on_close`` never runs, and the
    plugin stays behind: every later client or worker event then logs a
    ``WebSocketClosedError`` traceback.
    """

    def initialize(self, dask_server: Any = None, extra: Any = None) -> None:
        self.server = dask_server
        self.extra = extra or {}
        self.plugin = WebsocketPlugin(self, self.server)  # type: ignore[no-untyped-call]

    def open(self, *args: str, **kwargs: str) -> None:
        self.server.add_plugin(self.plugin)
        super().open()  # type: ignore[no-untyped-call]


def _replace_eventstream(application: Any) -> None:
    for rule in application.wildcard_router.rules:
        if rule.target is EventstreamHandler:
            rule.target = OpenedEventstreamHandler


def dask_setup(scheduler: Any) -> None:
    """Serve the dashboard on ``DASKBOX_SERVE_DASHBOARD`` (host:port; empty host = every
    interface), requiring the scheduler's client certificates when it runs TLS."""
    host, _, port = os.environ[ENV_SERVE_DASHBOARD].rpartition(":")
    _replace_eventstream(scheduler.http_application)
    ssl_context = scheduler.security.get_listen_args("scheduler")["ssl_context"]
    try:
        sockets = bind_sockets(int(port), address=host or None)
    except OSError as error:
        logger.error("dashboard port %s is already in use (%s)", port, error.strerror)
        raise
    server: Any = HTTPServer(scheduler.http_application, ssl_options=ssl_context)
    server.add_sockets(sockets)
    # distributed reads these two attributes (identity(), service_ports).
    server.address, server.port = sockets[0].getsockname()[:2]
    previous = scheduler.http_server
    previous.stop()
    closing = asyncio.ensure_future(previous.close_all_connections())
    _closing.add(closing)
    closing.add_done_callback(_closing.discard)
    scheduler.http_server = scheduler.services["dashboard"] = server
    scheme = "https" if ssl_context is not None else "http"
    who = "clients with the launch's certificate" if ssl_context is not None else "anyone"
    logger.info(
        "daskbox: dashboard at %s://%s:%s%s, for %s",
        scheme,
        host or "0.0.0.0",
        server.port,
        DASHBOARD_PATH,
        who,
    )
