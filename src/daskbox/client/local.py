"""The local side of the environment check: this interpreter, plus what the local lock says.

Reads poetry.lock and (through the images component's cached Poetry export) the set of
distributions the image's groups hold, so the check can tell a package missing on the
cluster from one that is only meant to be local (dev group, daskbox, the project itself).
"""

from __future__ import annotations

from pathlib import Path

from daskbox._pyproject import find_project_root
from daskbox.client.check import EnvironmentReport, LocalEnvironment
from daskbox.client.connection import CONNECTION_DIR
from daskbox.entrypoint.environment import environment_report
from daskbox.errors import ConfigError, DaskboxError


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


def local_environment(project_root: Path | None, groups: tuple[str, ...]) -> LocalEnvironment:
    """Describe the local side; without a project or a usable lock, say so in ``note``."""
    report = EnvironmentReport.from_dict(environment_report())
    if project_root is None or not (project_root / "poetry.lock").is_file():
        return LocalEnvironment(
            report, groups, note="no local poetry.lock, so the lock hash was not compared"
        )
    # Imported here: only the local side needs Poetry's export (and its cache).
    from daskbox._pyproject import daskbox_table
    from daskbox.images.environment import Target
    from daskbox.images.lock import export_environment, lock_hash

    local_lock_hash = lock_hash(project_root)
    try:
        extras = tuple(daskbox_table(project_root).get("extras", ()))
        exported = export_environment(project_root, Target.local(), groups, extras)
    except DaskboxError as error:
        note = f"cannot export poetry.lock ({error}); local-only packages were not checked"
        return LocalEnvironment(report, groups, local_lock_hash, note=note)
    return LocalEnvironment(report, groups, local_lock_hash, locked=frozenset(exported.names()))
