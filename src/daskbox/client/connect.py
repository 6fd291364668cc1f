"""Connection file -> ``distributed.Client`` over TLS -> proof that the environments match
-> the dashboard at a plain local URL.

``connect()`` is daskbox's public entry point for a Python session::

    from daskbox import connect
    client = connect()            # the project's only cluster
    client = connect("big-run")   # or name the instance, or connect(path=...)

It compares the local environment with the scheduler's and every worker's (see
``daskbox.client.check``) and raises ``EnvironmentMismatch`` before any job can fail
halfway. Workers that join later report through a worker plugin; since nothing can be
raised at that point, a mismatch there is warned about (``EnvironmentMismatchWarning``)
and recorded in ``client.daskbox_mismatches``. Then it forwards the cluster's dashboard,
which only the launch's client certificate may read, to ``http://127.0.0.1:<port>`` for as
long as the client is open (``daskbox.client.dashboard``).
"""

from __future__ import annotations

import logging
import ssl
import threading
import warnings
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from distributed import Client
from distributed.comm.addressing import get_address_host, parse_address, parse_host_port
from distributed.security import Security
from distributed.versions import VersionMismatchWarning

from daskbox._pyproject import find_project_root
from daskbox._tasks import Progress, internal_errors
from daskbox.client.check import (
    REBUILD_FIX,
    SCHEDULER,
    CheckResult,
    LocalEnvironment,
    check_reports,
)
from daskbox.client.connection import (
    ConnectionFile,
    find_connection_file,
    read_connection_file,
)
from daskbox.client.dashboard import DashboardForwarder, served_dashboard_port
from daskbox.client.local import local_environment, project_root_of
from daskbox.contract import DEFAULT_DASHBOARD_FORWARD_PORT
from daskbox.entrypoint.environment import REPORT_TOPIC, EnvironmentReporter, environment_report
from daskbox.errors import (
    ClusterUnreachable,
    ConnectionFileError,
    EnvironmentMismatch,
    EnvironmentMismatchWarning,
)

__all__ = [
    "DaskboxClient",
    "connect",
    "open_connection_file",
    "security_for",
    "start_dashboard",
    "unreachable",
]

logger = logging.getLogger(__name__)


def security_for(connection: ConnectionFile, source: str | Path | None = None) -> Security | None:
    """The client's TLS settings for ``connection`` (None for a plain tcp:// scheduler).

    The PEM text is checked first (``ClientTLS.damage``), then loaded as the client will load
    it, so a damaged file is reported as such (``source`` names it), never as a cluster that
    does not answer or as an error from deep inside ssl.
    """
    if connection.tls is not None:
        where = source or f"the connection file for {connection.instance}"
        damage = connection.tls.damage()
        if damage is None:
            try:
                security = connection.tls.security()
                security.get_connection_args("client")  # type: ignore[no-untyped-call]
                return security
            except (ssl.SSLError, ValueError, TypeError) as error:  # what the check missed
                damage = f"OpenSSL cannot load its certificates ({error})"
        raise ConnectionFileError(
            f"{where} is damaged: {damage}: relaunch (`invoke teardown`, then "
            "`invoke launch`) for new certificates"
        )
    if connection.scheduler_address.startswith("tls://"):
        raise ConnectionFileError(
            f"the connection file for {connection.instance} names a tls:// scheduler but "
            "holds no certificates: relaunch"
        )
    return None


def open_connection_file(
    instance: str | None = None, path: str | Path | None = None
) -> tuple[Path, ConnectionFile]:
    """``path``, or the project's file for ``instance`` (or its only one), read and checked
    to name a reachable address: a launch still waiting for its VM has none yet."""
    if path is not None:
        connection_path = Path(path)
    else:
        connection_path = find_connection_file(find_project_root(), instance)
    connection = read_connection_file(connection_path)
    if connection.state != "ready" or not connection.scheduler_address:
        raise ClusterUnreachable(
            f"the launch of {connection.instance} did not finish ({connection_path} says "
            f"{connection.state!r}): wait for `invoke launch`, or run `invoke teardown`"
        )
    try:
        parse_host_port(parse_address(connection.scheduler_address)[1])
    except (ValueError, TypeError, AttributeError) as error:
        raise ConnectionFileError(
            f"{connection_path} is damaged: its scheduler address "
            f"{connection.scheduler_address!r} is not an address ({error}): relaunch "
            "(`invoke teardown`, then `invoke launch`)"
        ) from None
    return connection_path, connection


def unreachable(connection: ConnectionFile, error: BaseException) -> ClusterUnreachable:
    """The one-line error for a scheduler that does not answer."""
    return ClusterUnreachable(
        f"cannot reach {connection.instance} at {connection.scheduler_address} ({error}): "
        "is it running? (`invoke status`; relaunch with `invoke launch`)"
    )


def start_dashboard(
    connection: ConnectionFile,
    security: Security | None,
    served_port: int,
    port: int = DEFAULT_DASHBOARD_FORWARD_PORT,
    *,
    or_any_free: bool = False,
) -> DashboardForwarder:
    """Forward ``http://127.0.0.1:port`` to the dashboard the scheduler serves on
    ``served_port`` (the scheduler's host), with the launch's client certificate."""
    ssl_context = (
        security.get_connection_args("client")["ssl_context"]  # type: ignore[no-untyped-call]
        if security is not None
        else None
    )
    host = get_address_host(connection.scheduler_address)
    forwarder = DashboardForwarder(host, served_port, ssl_context)
    forwarder.start(port, or_any_free=or_any_free)
    return forwarder


class DaskboxClient(Client):
    """A ``distributed.Client`` that also holds the environment check's results.

    ``daskbox_environment``: the check made by ``connect()`` (None when skipped).
    ``daskbox_mismatches``: the check of every worker that joined later with a different
    environment, appended as their reports arrive.
    """

    daskbox_environment: CheckResult | None = None
    _daskbox_watch: EnvironmentWatch | None = None
    daskbox_dashboard: DashboardForwarder | None = None

    @property
    def dashboard_link(self) -> str | None:
        """The local URL ``connect()`` forwards to the cluster's dashboard (Jupyter shows it)."""
        if self.daskbox_dashboard is not None:
            return self.daskbox_dashboard.url
        link: str | None = super().dashboard_link
        return link

    def close(self, *args: Any, **kwargs: Any) -> Any:
        """Close the client and stop forwarding its dashboard."""
        if self.daskbox_dashboard is not None:
            self.daskbox_dashboard.close()
        return super().close(*args, **kwargs)  # type: ignore[no-untyped-call]

    @property
    def daskbox_mismatches(self) -> list[CheckResult]:
        """Checks of workers that joined later with a different environment."""
        return self._daskbox_watch.mismatches if self._daskbox_watch else []


class EnvironmentWatch:
    """Checks the reports of workers that join after ``connect()``; runs on the client's loop.

    Each mismatch is warned about and appended to ``mismatches`` (a late worker cannot
    make ``connect()`` raise any more).
    """

    def __init__(self, local: LocalEnvironment, checked: set[str]) -> None:
        self.local = local
        self.mismatches: list[CheckResult] = []
        self._checked = set(checked)
        self._lock = threading.Lock()

    def on_event(self, event: tuple[float, Any]) -> None:
        """Check one ``(time, {worker, report})`` event of a worker not checked yet."""
        _, message = event
        try:
            worker, report = message["worker"], message["report"]
        except (TypeError, KeyError):
            logger.warning("ignored a malformed %s event: %r", REPORT_TOPIC, message)
            return
        with self._lock:
            if worker in self._checked:
                return
            self._checked.add(worker)
        result = check_reports(self.local, {worker: report})
        if result.ok:
            logger.info("environment check: worker %s matches", worker)
            return
        self.mismatches.append(result)
        warnings.warn(
            f"worker {worker} joined with a different environment:\n{result.mismatch_message()}",
            EnvironmentMismatchWarning,
            stacklevel=1,
        )


def gather_reports(client: Client) -> dict[str, Mapping[str, Any]]:
    """``environment_report()`` of the scheduler and of every worker, keyed by process.

    The scheduler and the workers are asked side by side: two round trips in the time of one.
    The scheduler's answer is read first: a scheduler without daskbox's report raises
    ``ImportError`` (workers report the same failure as a bare ``Exception``).
    """
    side = ThreadPoolExecutor(1)
    try:
        on_workers = side.submit(client.run, environment_report)
        on_scheduler = client.run_on_scheduler(environment_report)  # type: ignore[no-untyped-call]
        return {SCHEDULER: on_scheduler, **on_workers.result()}
    finally:
        # Not waiting: after a Ctrl-C or an error the caller closes the client, which ends
        # the workers' call.
        side.shutdown(wait=False)


def check_environment(
    client: DaskboxClient,
    local: LocalEnvironment,
    *,
    strict: bool = True,
    echo: Progress | None = print,
) -> CheckResult | None:
    """Compare ``client``'s cluster with ``local``, then keep watching workers that join.

    Raises ``EnvironmentMismatch`` (``strict``) or warns; on success ``echo``es one line.
    Returns None when the cluster cannot report at all (not a daskbox image) and not ``strict``.
    Fills ``client.daskbox_environment`` and (as workers join) ``client.daskbox_mismatches``.
    """
    try:
        reports = gather_reports(client)
    except ImportError as error:
        message = (
            f"the cluster cannot run daskbox's environment report ({error}), so it does not run "
            f"a daskbox image: {REBUILD_FIX}"
        )
        if strict:
            raise EnvironmentMismatch(message) from None
        warnings.warn(message, EnvironmentMismatchWarning, stacklevel=3)
        return None
    result = check_reports(local, reports)
    if not result.ok and strict:
        raise EnvironmentMismatch(result.mismatch_message())

    watch = EnvironmentWatch(local, checked=set(reports))
    client.daskbox_environment = result
    client._daskbox_watch = watch
    client.subscribe_topic(REPORT_TOPIC, watch.on_event)  # type: ignore[no-untyped-call]
    client.register_plugin(EnvironmentReporter(), name=REPORT_TOPIC)
    # A worker that joined just before the subscription reached the scheduler logged its
    # report unseen: replay the history, for workers still in the cluster only.
    current = set(client.scheduler_info(n_workers=-1)["workers"])
    for event in client.get_events(REPORT_TOPIC):
        if isinstance(event[1], dict) and event[1].get("worker") in current:
            watch.on_event(event)

    if not result.ok:
        warnings.warn(result.mismatch_message(), EnvironmentMismatchWarning, stacklevel=3)
    elif echo is not None:
        echo(result.confirmation())
    return result


def connect(
    instance: str | None = None,
    *,
    path: str | Path | None = None,
    strict: bool = True,
    check: bool = True,
    dashboard: bool = True,
    timeout: float = 30,
    **client_kwargs: Any,
) -> DaskboxClient:
    """Connect to a launched cluster and prove it runs the local environment.

    Reads ``path``, or ``<project>/.daskbox/<instance>.json`` (the project being the nearest
    folder above the current one with a pyproject.toml; without ``instance``, its only
    connection file). Returns a ``distributed.Client`` over the file's TLS certificates.

    With ``check`` (the default) the scheduler and every worker are compared with this
    interpreter: Python, every installed distribution, the image's lock hash, with what the
    lock gives each platform (see ``daskbox.client.check``). A difference raises
    ``EnvironmentMismatch`` listing it, or with ``strict=False`` warns
    (``EnvironmentMismatchWarning``). A match prints one line. Workers joining later are
    checked as they arrive; their mismatches are warned about and recorded in
    ``client.daskbox_mismatches``.

    With ``dashboard`` (the default) the cluster's dashboard is forwarded to a plain local
    URL, ``http://127.0.0.1:8788/status`` (another free port when that one is taken), for
    as long as the client is open; it is printed and is ``client.dashboard_link``. The
    client is a ``DaskboxClient``: a ``distributed.Client`` plus those attributes.
    """
    with internal_errors():  # a bug is an InternalError, not another exception
        connection_path, connection = open_connection_file(instance, path)
        security = security_for(connection, connection_path)
        with ThreadPoolExecutor(1) as side:
            # The local side (lock hash, installed distributions, the record's markers) is
            # worked out while the client waits on the network.
            local_side = (
                side.submit(local_environment, project_root_of(connection_path), connection)
                if check
                else None
            )
            try:
                with warnings.catch_warnings():
                    if check:
                        # distributed compares a handful of packages and warns; the check below
                        # compares all of them and knows which ones are meant to be local-only.
                        warnings.simplefilter("ignore", VersionMismatchWarning)
                    client = DaskboxClient(  # type: ignore[no-untyped-call]
                        connection.scheduler_address,
                        security=security,
                        timeout=timeout,
                        **client_kwargs,
                    )
            except OSError as error:
                raise unreachable(connection, error) from None
        try:
            if local_side is not None:
                check_environment(client, local_side.result(), strict=strict)
            served = served_dashboard_port(client.scheduler_info())
            if dashboard and served is not None:
                client.daskbox_dashboard = start_dashboard(
                    connection, security, served, or_any_free=True
                )
                print(f"dashboard: {client.daskbox_dashboard.url}")
        except BaseException:
            client.close()
            raise
        return client
