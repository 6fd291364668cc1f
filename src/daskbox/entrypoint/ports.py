"""Refuse to start when the scheduler's or the dashboard's port is taken on this machine.

Left alone, the scheduler fails with "Scheduler failed to start" when its port is taken,
and distributed moves a taken dashboard to a random port with a warning, so the URL a
launch prints points at whatever holds the port. The entrypoint probes both ports first,
the way the scheduler binds them (SO_REUSEADDR, so a port in TIME_WAIT still counts as
free), and says which one is in use.
"""

from __future__ import annotations

import errno
import socket

from daskbox.contract import ENV_DASHBOARD_PORT, ENV_SCHEDULER_PORT
from daskbox.entrypoint.settings import Settings, SettingsError


def _in_use(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def check_ports_free(settings: Settings) -> None:
    """Raise ``SettingsError`` naming the first of the two ports that is already in use."""
    for port, variable, what in (
        (settings.scheduler_port, ENV_SCHEDULER_PORT, "scheduler"),
        (settings.dashboard_port, ENV_DASHBOARD_PORT, "dashboard"),
    ):
        if _in_use(settings.listen_host, port):
            where = settings.listen_host or "this machine"
            raise SettingsError(
                f"port {port} ({variable}, the {what}) is already in use on {where}: stop what "
                f"listens there, or pick another port (`invoke launch --{what}-port N`)"
            )
