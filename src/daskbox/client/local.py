"""The local side of the environment check: this interpreter, plus what the local lock says.

Reads poetry.lock and (through the images component's cached Poetry export) the set of
distributions the image's groups and extras hold, so the check can tell a package missing
on the cluster from one that is only meant to be local (dev group, daskbox, the project).
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


def local_environment(
    project_root: Path | None, groups: tuple[str, ...], extras: tuple[str, ...] = ()
) -> LocalEnvironment:
    """Describe the local side for an image of ``groups`` and ``extras``.

    ``extras`` come from the connection file (what the image was built with); files written
    before it recorded them hold none, so then the project's ``[tool.daskbox] extras`` are
    assumed. Without a project or a usable lock, ``note`` says what was not checked.
    """
    report = EnvironmentReport.from_dict(environment_report())
    if project_root is None or not (project_root / "poetry.lock").is_file():
        note = "no local poetry.lock, so the lock hash was not compared"
        return LocalEnvironment(report, groups, extras, note=note)
    # Imported here: only the local side needs the images settings and Poetry's export.
    from daskbox.images.environment import Platform
    from daskbox.images.lock import export_environment, lock_hash
    from daskbox.images.settings import load_settings

    local_lock_hash = lock_hash(project_root)
    try:
        extras = extras or load_settings(project_root).extras
        exported = export_environment(project_root, Platform.local(), groups, extras)
    except DaskboxError as error:
        note = f"cannot export poetry.lock ({error}); local-only packages were not checked"
        return LocalEnvironment(report, groups, extras, local_lock_hash, note=note)
    return LocalEnvironment(
        report, groups, exported.extras, local_lock_hash, locked=frozenset(exported.names())
    )
