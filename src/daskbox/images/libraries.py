"""Check that every compiled extension in the image finds its shared libraries.

For each ELF file of the image's venv, every ``DT_NEEDED`` library must be in the image's
library folders (the base image's, plus what ``apt-packages`` install) or in a folder its
``RUNPATH``/``RPATH`` names (``$ORIGIN``-relative folders such as auditwheel's
``numpy.libs``). This reads the layer tars on the host (pyelftools), so it needs no
container, no network and no emulation. A missing library fails the build with its soname
and, where known, the Debian package that provides it.   [pure, apart from reading tars]
"""

from __future__ import annotations

import io
import json
import posixpath
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

# sonames that manylinux wheels may not bundle or often leave out, and the bookworm
# package providing each (the fix names it for apt-packages).
DEBIAN_PACKAGES = {
    "libgomp.so.1": "libgomp1",
    "libstdc++.so.6": "libstdc++6",
    "libgcc_s.so.1": "libgcc-s1",
    "libgfortran.so.5": "libgfortran5",
    "libquadmath.so.0": "libquadmath0",
    "libatomic.so.1": "libatomic1",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libX11.so.6": "libx11-6",
    "libXext.so.6": "libxext6",
    "libSM.so.6": "libsm6",
    "libICE.so.6": "libice6",
    "libxml2.so.2": "libxml2",
    "libxslt.so.1": "libxslt1.1",
    "libpq.so.5": "libpq5",
    "libodbc.so.2": "libodbc2",
    "libgeos_c.so.1": "libgeos-c1v5",
    "libproj.so.25": "libproj25",
    "libgdal.so.32": "libgdal32",
    "libjpeg.so.62": "libjpeg62-turbo",
    "libpng16.so.16": "libpng16-16",
    "libopenblas.so.0": "libopenblas0",
    "libblas.so.3": "libblas3",
    "liblapack.so.3": "liblapack3",
    "libsnappy.so.1": "libsnappy1v5",
    "libzstd.so.1": "libzstd1",
    "liblz4.so.1": "liblz4-1",
    "libcurl.so.4": "libcurl4",
    "libsqlite3.so.0": "libsqlite3-0",
    "libmagic.so.1": "libmagic1",
    "libcairo.so.2": "libcairo2",
    "libpango-1.0.so.0": "libpango-1.0-0",
    "libnuma.so.1": "libnuma1",
}
_ELF_MAGIC = b"\x7fELF"


@dataclass(frozen=True)
class MissingLibrary:
    """A library an ELF file of the image needs and the image does not have."""

    soname: str
    needed_by: str  # the file's path in the image

    @property
    def package(self) -> str | None:
        """The Debian package providing ``soname``, when known."""
        return DEBIAN_PACKAGES.get(self.soname)


@dataclass(frozen=True)
class ElfFile:
    """The dynamic section's view of one ELF file in the image."""

    path: str  # absolute, in the image
    needed: tuple[str, ...]
    search: tuple[str, ...]  # RUNPATH/RPATH folders, $ORIGIN expanded


def elf_files_in_tar(archive: tarfile.TarFile, prefix: str = "/") -> Iterator[ElfFile]:
    """The ELF files of a layer tar (or of an archive of a folder under ``prefix``)."""
    for member in archive:
        if not member.isfile() or member.size < 64:
            continue
        stream = archive.extractfile(member)
        if stream is None or stream.read(4) != _ELF_MAGIC:
            continue
        data = io.BytesIO(_ELF_MAGIC + stream.read())
        parsed = _dynamic(data, posixpath.join(prefix, member.name))
        if parsed is not None:
            yield parsed


def _dynamic(data: io.BytesIO, path: str) -> ElfFile | None:
    # Imported here: pyelftools takes a third of a second to import, and a no-op build
    # checks nothing.
    from elftools.common.exceptions import ELFError
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    try:
        elf = ELFFile(data)
        needed: list[str] = []
        search: list[str] = []
        for section in elf.iter_sections():
            if not isinstance(section, DynamicSection):
                continue
            for tag in section.iter_tags():
                kind = tag.entry.d_tag
                # pyelftools names the decoded string after the tag.
                if kind == "DT_NEEDED":
                    needed.append(str(getattr(tag, "needed", "")))
                elif kind in ("DT_RUNPATH", "DT_RPATH"):
                    value = getattr(tag, "runpath" if kind == "DT_RUNPATH" else "rpath", "")
                    search += str(value).split(":")
    except (ELFError, ValueError, KeyError):
        return None
    origin = posixpath.dirname(path)
    folders = tuple(
        posixpath.normpath(f.replace("$ORIGIN", origin).replace("${ORIGIN}", origin))
        for f in search if f
    )  # fmt: skip
    return ElfFile(path, tuple(needed), folders)


def missing_libraries(
    elf_files: Iterable[ElfFile], image_files: set[str], library_dirs: Iterable[str]
) -> list[MissingLibrary]:
    """Every needed library found neither in a file's own search folders nor in the image's
    library folders. ``image_files`` holds absolute paths of every file in the image."""
    system = tuple(library_dirs)
    missing: dict[str, MissingLibrary] = {}
    for elf in elf_files:
        for soname in elf.needed:
            folders = (*elf.search, *system)
            if any(posixpath.join(folder, soname) in image_files for folder in folders):
                continue
            missing.setdefault(soname, MissingLibrary(soname, elf.path))
    return sorted(missing.values(), key=lambda m: m.soname)


def tar_paths(archive: tarfile.TarFile, prefix: str = "/") -> set[str]:
    """Absolute paths of the files and links in a layer tar."""
    return {posixpath.join(prefix, m.name) for m in archive if not m.isdir()}


@dataclass(frozen=True)
class LayerScan:
    """What the check needs from one layer tar: its paths and its ELF files."""

    paths: frozenset[str]
    elves: tuple[ElfFile, ...]


def scan_layer(layer: Path) -> LayerScan:
    """Scan a prepared layer once; the result sits next to it (``<layer>.scan.json``), so a
    code-only rebuild does not read the unchanged venv layer again."""
    sidecar = layer.with_name(layer.name + ".scan.json")
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
        return LayerScan(
            frozenset(data["paths"]),
            tuple(ElfFile(e["path"], tuple(e["needed"]), tuple(e["search"]))
                  for e in data["elves"]),
        )  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        pass
    with tarfile.open(layer) as archive:
        paths = tar_paths(archive)
    with tarfile.open(layer) as archive:
        elves = tuple(elf_files_in_tar(archive))
    scan = LayerScan(frozenset(paths), elves)
    partial = sidecar.with_suffix(".part")
    partial.write_text(json.dumps({"paths": sorted(paths),
                                   "elves": [asdict(e) for e in elves]}))  # fmt: skip
    partial.replace(sidecar)
    return scan


def describe_missing(missing: list[MissingLibrary], platform: str) -> str:
    """One line: each missing soname, who needs it, and the fix."""
    parts = [f"{m.soname} (needed by {m.needed_by})" for m in missing]
    packages = sorted({m.package for m in missing if m.package})
    unknown = [m.soname for m in missing if not m.package]
    fix = []
    if packages:
        listed = ", ".join(f'"{p}"' for p in packages)
        fix.append(f"add {listed} to [tool.daskbox] apt-packages")
    if unknown:
        fix.append(f"add the Debian package providing {', '.join(unknown)} to apt-packages "
                   "(`apt-file search` finds it)")  # fmt: skip
    return (f"the {platform} image cannot load {len(missing)} shared "
            f"librar{'y' if len(missing) == 1 else 'ies'}: {'; '.join(parts)}: "
            + " and ".join(fix))  # fmt: skip
