"""What this Python process runs: the report ``connect()`` compares with the local one.

Runs on the scheduler and on every worker inside the image (``client.run``), and
locally for the other side of the comparison. It is copied into the image, not
installed, so it imports only the standard library, ``distributed`` (for the worker
plugin) and daskbox's contract module, never other daskbox modules.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import sys
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from daskbox.contract import ENV_GROUPS, ENV_LOCK_HASH, ENV_NODE_NAME

__all__ = ["REPORT_TOPIC", "EnvironmentReporter", "environment_report"]

# The worker plugin logs each worker's report under this topic; connect() subscribes to it.
REPORT_TOPIC = "daskbox-environment"


def _canonical_name(name: str) -> str:
    # PEP 503 normalization, spelled out because `packaging` may not be in the user's environment.
    return re.sub(r"[-_.]+", "-", name).lower()


def _name_and_version(distribution: importlib.metadata.Distribution) -> tuple[str, str] | None:
    """The ``Name`` and ``Version`` headers of a distribution's metadata.

    Read from the top of METADATA (PKG-INFO for egg-info), where core metadata puts them as
    single-line headers: about ten times faster than ``distribution.metadata``, which parses
    the whole file (long descriptions included) with the email parser, for every one of the
    environment's distributions at every connect.
    """
    text = distribution.read_text("METADATA") or distribution.read_text("PKG-INFO") or ""
    headers: dict[str, str] = {}
    for line in text.splitlines():
        if not line:  # the headers end at the first blank line
            break
        key, _, value = line.partition(":")
        if key in ("Name", "Version"):
            headers.setdefault(key, value.strip())
            if len(headers) == 2:
                return headers["Name"], headers["Version"]
    name = distribution.metadata["Name"]  # an unusual layout: let the full parser decide
    return (name, distribution.version) if name else None


def _path_state() -> tuple[tuple[str, int], ...]:
    """``sys.path``'s entries with their modification times.

    Installing, upgrading or removing a distribution adds or removes a ``*.dist-info``
    folder in one of them, which changes that folder's mtime.
    """
    state = []
    for entry in sys.path:
        try:
            state.append((entry, Path(entry or ".").stat().st_mtime_ns))
        except OSError:
            state.append((entry, -1))
    return tuple(state)


_scanned: tuple[tuple[tuple[str, int], ...], dict[str, str]] | None = None


def installed_distributions() -> dict[str, str]:
    """Map every importable distribution's canonical name to its version.

    When a name is installed twice on ``sys.path``, the first one wins, as it does for import.
    The scan (about 20 ms for a hundred distributions) is kept until ``sys.path`` or one of
    its folders changes: every connect() asks every process in the cluster again.
    """
    global _scanned
    state = _path_state()
    if _scanned is not None and _scanned[0] == state:
        return dict(_scanned[1])
    found: dict[str, str] = {}
    for distribution in importlib.metadata.distributions():
        named = _name_and_version(distribution)
        if named is not None:
            found.setdefault(_canonical_name(named[0]), named[1])
    _scanned = (state, dict(sorted(found.items())))
    return dict(_scanned[1])


def environment_report() -> dict[str, Any]:
    """Describe this interpreter: Python, platform, distributions, and the image's lock.

    Plain JSON/msgpack-able data, so it travels through ``client.run`` and worker events.
    ``lock_hash`` and ``groups`` come from the image's ``DASKBOX_LOCK_HASH`` and
    ``DASKBOX_GROUPS`` (None and [] outside an image).
    """
    groups = os.environ.get(ENV_GROUPS, "")
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": f"{platform.system()}-{platform.machine()}",
        "distributions": installed_distributions(),
        "lock_hash": os.environ.get(ENV_LOCK_HASH) or None,
        "groups": [group.strip() for group in groups.split(",") if group.strip()],
        # The VM this process runs on (its workers are named after it); "" elsewhere.
        "node": os.environ.get(ENV_NODE_NAME, ""),
    }


class EnvironmentReporter(WorkerPlugin):
    """Worker plugin: each worker, including those that join later, logs its report.

    The event goes to the scheduler under ``REPORT_TOPIC``; clients subscribed to it
    (``connect()`` is) compare it with their own environment as it arrives.
    """

    name = REPORT_TOPIC
    idempotent = True

    def setup(self, worker: Any) -> None:
        worker.log_event(REPORT_TOPIC, {"worker": worker.address, "report": environment_report()})
