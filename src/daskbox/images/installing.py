"""The locked wheels installed for the image's venv by pypa's ``installer``, on the host.

Staged in a folder, laid out as ``/opt/venv`` (the image's paths, in scripts' shebangs and in
RECORD), with the executable files noted as they are written: ``layers`` turns the stage
into a tar without reading modes back from the host's file system.   [side effects: files]
"""

from __future__ import annotations

import posixpath
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.records import RecordEntry
from installer.sources import WheelFile
from installer.utils import Scheme, construct_record_file
from packaging.utils import parse_wheel_filename

from daskbox.contract import VENV
from daskbox.images.wheels import Artifact

__all__ = ["ImageDestination", "install_wheels"]


class ImageDestination(SchemeDictionaryDestination):
    """pypa installer's destination for the image's paths, staged under ``destdir``.

    Independent of the host: executable files are noted as they are written (the host's
    file system may not keep the bit), and RECORD names the scripts relative to
    site-packages with forward slashes (installer writes absolute host paths on Windows).
    """

    def __init__(self, stage: Path, minor: str) -> None:
        self.image_paths = {
            "purelib": f"{VENV}/lib/python{minor}/site-packages",
            "platlib": f"{VENV}/lib/python{minor}/site-packages",
            "scripts": f"{VENV}/bin",
            "data": VENV,
        }
        self.stage = stage
        self.executables: set[str] = set()
        super().__init__(
            dict(self.image_paths),
            interpreter=f"{VENV}/bin/python",
            script_kind="posix",
            overwrite_existing=True,
            destdir=str(stage),
        )

    def with_headers(self, name: str, minor: str) -> None:
        """Headers of distribution ``name`` go where pip puts them in a venv."""
        self.scheme_dict["headers"] = self.image_paths["headers"] = (
            f"{VENV}/include/site/python{minor}/{name}"
        )

    def write_to_fs(
        self, scheme: Scheme, path: str, stream: BinaryIO, is_executable: bool
    ) -> RecordEntry:
        entry = super().write_to_fs(scheme, path, stream, is_executable)
        if is_executable:
            written = self._path_with_destdir(scheme, path)
            self.executables.add(written.relative_to(self.stage).as_posix())
        return entry

    def finalize_installation(
        self, scheme: Scheme, record_file_path: str, records: Iterable[tuple[Scheme, RecordEntry]]
    ) -> None:
        def prefix_for_scheme(file_scheme: str) -> str | None:
            if file_scheme == scheme:
                return None
            relative = posixpath.relpath(self.image_paths[file_scheme], self.image_paths[scheme])
            return f"{relative}/"

        with construct_record_file(list(records), prefix_for_scheme) as record_stream:
            self.write_to_fs(scheme, record_file_path, record_stream, is_executable=False)


# installer skips a wheel's __pycache__ files (as pip does) and says so in a RuntimeWarning
# per file: noise for the user, whose wheel (numpy 1.26's distutils) is not theirs to fix.
_SKIPPED_PYCACHE = r"Skip installing \S+ from \S+\. Installing files in a __pycache__ directory"


def install_wheels(wheels: Iterable[Artifact], stage: Path, minor: str) -> set[str]:
    """pypa installer: the same files pip would install, laid out for the image's venv
    under ``stage``. Returns the executable files, as tar names."""
    destination = ImageDestination(stage, minor)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _SKIPPED_PYCACHE, RuntimeWarning)
        for wheel in wheels:
            destination.with_headers(str(parse_wheel_filename(wheel.filename)[0]), minor)
            with WheelFile.open(wheel.path) as source:
                install(source, destination, {"INSTALLER": b"daskbox\n"})
    return destination.executables
