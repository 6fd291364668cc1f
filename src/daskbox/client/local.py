"""The local side of the environment check: this interpreter, plus what the image's record says.

The record that ``invoke build push`` wrote, and ``invoke launch`` copied into the connection
file, holds the lock's export for the image's groups and extras with its markers. Evaluated
for the image's platform it tells a package missing on the cluster from one that is only meant
to be local (dev group, daskbox, Jupyter): no Poetry, no export at connect time.
"""

from __future__ import annotations

from pathlib import Path

from daskbox._pyproject import find_project_root, lock_hash
from daskbox.client.check import EnvironmentReport, LocalEnvironment
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


def local_environment(project_root: Path | None, connection: ConnectionFile) -> LocalEnvironment:
    """Describe the local side for the image ``connection`` runs.

    Without a local poetry.lock the lock hash is not compared; without a record (an explicit
    ``--image``) local-only packages are not told apart: ``note`` says what was not checked.
    """
    report = EnvironmentReport.from_dict(environment_report())
    groups, extras = connection.groups, connection.extras
    notes = []
    local_lock_hash = None
    if project_root is not None and (project_root / "poetry.lock").is_file():
        local_lock_hash = lock_hash(project_root)
    else:
        notes.append("no local poetry.lock, so the lock hash was not compared")
    locked = None
    if connection.record is not None:
        locked = frozenset(connection.record.image_distributions)
    else:
        notes.append("the image has no daskbox record, so local-only packages were not checked")
    return LocalEnvironment(
        report, groups, extras, local_lock_hash, locked=locked, note="; ".join(notes) or None
    )
