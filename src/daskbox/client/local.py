"""The local side of the environment check: this interpreter, plus what the image's record says.

The record that ``invoke build push`` wrote, and ``invoke launch`` copied into the connection
file, holds the lock's export for the image's groups and extras with its markers. Evaluated
once for this interpreter's platform and once for the image's, it says what each side
should have: a package missing on the cluster is told from one meant to be local only (dev
group, daskbox, Jupyter) and from one the lock gives a single platform (a macOS-only or
Linux-only dependency). No Poetry, no export at connect time.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from daskbox._pyproject import find_project_root, lock_hash
from daskbox.client.check import EnvironmentReport, LocalEnvironment, LockedSides
from daskbox.client.connection import CONNECTION_DIR, ConnectionFile
from daskbox.entrypoint.environment import environment_report
from daskbox.errors import ConfigError


def project_root_of(connection_path: Path) -> Path | None:
    """The project whose lock the cluster is compared with.

    ``<project>/.daskbox/<instance>.json`` belongs to ``<project>``; a file kept anywhere
    else is compared with the project around the current folder, if any.
    """
    folder = connection_path.resolve().parent
    if folder.name == CONNECTION_DIR and (folder.parent / "pyproject.toml").is_file():
        return folder.parent
    try:
        return find_project_root()
    except ConfigError:
        return None


def local_environment(
    project_root: Path | None,
    connection: ConnectionFile,
    *,
    report: EnvironmentReport | None = None,
    markers: Mapping[str, str] | None = None,
) -> LocalEnvironment:
    """Describe the local side for the image ``connection`` runs.

    ``report`` and ``markers`` (PEP 508 values) default to this interpreter's; a test passes
    another platform's. Without a local poetry.lock the lock hash is not compared; without a
    record (an explicit ``--image``) local-only and platform-only packages are not told
    apart: ``note`` says what was not checked.
    """
    if report is None:
        report = EnvironmentReport.from_dict(environment_report())
    if markers is None:
        from packaging.markers import default_environment

        markers = {key: str(value) for key, value in default_environment().items()}
    notes = []
    local_lock_hash = None
    if project_root is not None and (project_root / "poetry.lock").is_file():
        local_lock_hash = lock_hash(project_root)
    else:
        notes.append("no local poetry.lock, so the lock hash was not compared")
    locked = None
    if connection.record is not None:
        record = connection.record
        locked = LockedSides(
            local=record.distributions_for(markers), image=record.image_distributions
        )
    else:
        notes.append("the image has no daskbox record, so local-only packages were not checked")
    return LocalEnvironment(
        report,
        connection.groups,
        connection.extras,
        local_lock_hash,
        locked=locked,
        note="; ".join(notes) or None,
    )
