"""The client's invoke tasks: ``invoke check`` and ``invoke dashboard``."""

from __future__ import annotations

from invoke.context import Context
from invoke.tasks import task

from daskbox._task_flags import NumberFlagsTask
from daskbox._tasks import one_line_errors
from daskbox.contract import DEFAULT_DASHBOARD_FORWARD_PORT
from daskbox.errors import ConfigError

_WHICH = {
    "instance": "the launched instance (default: the project's only one)",
    "path": "a connection file to use instead of <project>/.daskbox/<instance>.json",
}


def _port(port: str | None) -> int:
    """``--port`` as a number (not given: the default), or one line naming the fix."""
    try:
        return DEFAULT_DASHBOARD_FORWARD_PORT if port is None else int(port)
    except ValueError:
        raise ConfigError(
            f"--port {port!r} is not a port number: e.g. --port "
            f"{DEFAULT_DASHBOARD_FORWARD_PORT}, or 0 for a free one"
        ) from None


@task(help=_WHICH)
def check(c: Context, instance: str | None = None, path: str | None = None) -> None:
    """Check that the cluster runs the local environment; exit 1 listing any difference."""
    with one_line_errors():
        # Imported here so `invoke --list` does not pay for distributed.
        from daskbox.client.connect import connect

        connect(instance, path=path, strict=True, dashboard=False).close()


@task(
    klass=NumberFlagsTask,
    numbers=["port"],
    help={
        **_WHICH,
        "port": f"local port to serve the dashboard on (default: "
        f"{DEFAULT_DASHBOARD_FORWARD_PORT}; 0 picks a free one)",
        "no-browser": "print the URL only; do not open a browser",
    },
)
def dashboard(
    c: Context,
    instance: str | None = None,
    path: str | None = None,
    port: str | None = None,
    no_browser: bool = False,
) -> None:
    """Open the cluster's dashboard at http://127.0.0.1:8788/status until Ctrl-C.

    The cluster shows its dashboard only to the launch's client certificate. This forwards
    a plain local URL to it, presenting that certificate, so the browser shows no warning.
    Use the same URL in JupyterLab's Dask panel (dask-labextension).
    """
    with one_line_errors():
        import webbrowser

        from daskbox.client.connect import (
            open_connection_file,
            security_for,
            start_dashboard,
            unreachable,
        )
        from daskbox.client.dashboard import served_dashboard_port
        from daskbox.client.identity import scheduler_identity
        from daskbox.errors import ClusterUnreachable

        local_port = _port(port)
        connection_path, connection = open_connection_file(instance, path)
        security = security_for(connection, connection_path)
        try:
            identity = scheduler_identity(connection.scheduler_address, security)
        except (OSError, TimeoutError, EOFError) as error:
            raise unreachable(connection, error) from None
        served = served_dashboard_port(identity)
        if served is None:
            raise ClusterUnreachable(
                f"the scheduler of {connection.instance} serves no dashboard: relaunch it"
            )
        forwarder = start_dashboard(connection, security, served, local_port)
    with one_line_errors():
        try:
            print(
                f"dashboard of {connection.instance}: {forwarder.url}  (forwarded to "
                f"{forwarder.upstream_url} with your client certificate; Ctrl-C stops)",
                flush=True,
            )
            if not no_browser:
                webbrowser.open(forwarder.url)
            forwarder.wait()
        except KeyboardInterrupt:
            pass
        finally:
            forwarder.close()
