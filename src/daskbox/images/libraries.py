"""Check that every compiled extension in the image finds its shared libraries, as ``ld.so`` does.

The layer tars are scanned on the host (pyelftools: no container, no network, no emulation)
for each ELF file's class, machine, soname, ``DT_NEEDED``, ``DT_RPATH`` and ``DT_RUNPATH``.
``Loader`` then maps each shared object of the venv the way glibc's ``ld.so`` does when
Python dlopens an extension module: the interpreter and what it links are loaded already
(a needed name matches a loaded object's soname or the name it was loaded as); the other
dependencies are mapped breadth-first (``_dl_map_object_deps``), each needed name searched in
the ``DT_RPATH`` of the requesting object and of its loaders up to the executable (skipped
when the requester has a ``DT_RUNPATH``; an object's ``DT_RPATH`` is ignored when it has a
``DT_RUNPATH``), then the requester's own ``DT_RUNPATH``, then the ``ld.so.cache`` folders and
the default ones, with ``$ORIGIN``, ``$LIB`` and ``$PLATFORM`` expanded, and candidates of
another ELF class or machine skipped. Left out (no wheel relies on them): ``glibc-hwcaps``
subfolders, ``DF_1_NODEFLIB``, ``LD_LIBRARY_PATH`` (the image sets none).

tests/images/test_loader_differential.py holds this equal to the real loader on every shared
object of the real wheels in tests/corpus_wheels.py. A library that only a GPU provides (the
driver's, the CUDA toolkit's), or that only a module a plain import leaves alone needs
(numba's threading layers), is a warning; any other missing library fails the build, unless
``ignore-missing-libraries`` lists it.   [pure, apart from reading tars]
"""

from __future__ import annotations

import io
import json
import posixpath
import re
import tarfile
from collections import deque
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

# Files that bookworm's Contents index (main, amd64) lists in a library folder, and the
# package shipping each: the fix names it for apt-packages. Only these get a suggestion
# (tests/images/test_debian_packages.py checks every entry against the index). Not here:
# what Debian's alternatives provide (libblas.so.3, libopenblas.so.0), as no package ships it.
DEBIAN_PACKAGES = {
    "libgomp.so.1": "libgomp1",
    "libgomp.so.1.0.0": "libgomp1",
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
# Libraries only a GPU machine has: the NVIDIA driver's and the CUDA toolkit's (by soname
# stem). Missing, they are a warning: the module needing them is a GPU extra.
_GPU_ONLY = re.compile(
    r"^lib(cuda|nvidia-ml|nvcuvid|nvidia-encode|cudart|cublas|cublasLt|cufft|cufftw|curand"
    r"|cusolver|cusolverMg|cusparse|cusparseLt|cudnn(_\w+)?|nccl|nvrtc(-builtins)?|nvToolsExt"
    r"|nvJitLink|cupti|nvjpeg|npp\w*|cufile|cutensor\w*)\.so(\.\d+)*$"
)
# auditwheel renames what it bundles to <name>-<8 hex digits>.so...: no package ships that.
# Modules that a plain import never loads, which fall back when they cannot: their missing
# libraries are a warning.
_OPTIONAL_MODULES = {
    r"/numba/np/ufunc/(tbb|omp)pool\.cpython-[^/]+\.so$": "numba's optional threading layer",
}
_HASHED = re.compile(r"-[0-9a-f]{8}\.so")
# An extension module's file name (PEP 3149 tags, the stable ABI, or an untagged module).
_EXTENSION_MODULE = re.compile(r"^(?!lib)[^.]+(\.(cpython|cp|pypy|abi)[^/]*)?\.so$")
_ELF_MAGIC = b"\x7fELF"
_DF_1_PIE = 0x08000000
_SCAN_FORMAT = 3  # 2: class, machine, kind, soname, rpath, runpath apart; 3: PIE = executable
_SHOWN = 3  # libraries named in the one-line error
_MACHINES = {"linux/amd64": (64, "EM_X86_64"), "linux/arm64": (64, "EM_AARCH64")}
_PLATFORM_NAMES = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}


@dataclass(frozen=True)
class ElfFile:
    """One ELF file of the image, as the dynamic loader reads it."""

    path: str  # absolute, in the image
    elf_class: int = 64  # 32 or 64
    machine: str = "EM_X86_64"  # e_machine, as pyelftools names it
    kind: str = "shared"  # "shared" (dlopen-able), "executable" (ET_EXEC, PIE) or "other"
    soname: str | None = None
    needed: tuple[str, ...] = ()
    rpath: tuple[str, ...] = ()  # DT_RPATH entries as written ($ORIGIN unexpanded)
    runpath: tuple[str, ...] = ()  # DT_RUNPATH entries as written

    @property
    def search_rpath(self) -> tuple[str, ...]:
        """The DT_RPATH the loader uses: none when the file has a DT_RUNPATH."""
        return () if self.runpath else self.rpath


@dataclass(frozen=True)
class MissingLibrary:
    """A library an ELF file of the image needs and the loader would not find."""

    soname: str
    needed_by: str  # the file's path in the image (the object whose DT_NEEDED names it)
    module: str = ""  # the venv file whose load needs it (``needed_by`` or what loads it)

    @property
    def package(self) -> str | None:
        """The Debian package shipping ``soname``, where Debian's Contents index says so."""
        return None if _HASHED.search(self.soname) else DEBIAN_PACKAGES.get(self.soname)

    @property
    def gpu_only(self) -> bool:
        """Whether only a GPU machine (its driver, the CUDA toolkit) provides it."""
        return _GPU_ONLY.match(self.soname) is not None


def elf_files_in_tar(
    archive: tarfile.TarFile, prefix: str = "/", depth: int | None = None
) -> Iterator[ElfFile]:
    """The ELF files of a layer tar (or of an archive of a folder under ``prefix``); with
    ``depth``, only those at most that many folders deep."""
    for member in archive:
        if depth is not None and member.name.count("/") > depth:
            continue
        if not member.isfile() or member.size < 64:
            continue
        stream = archive.extractfile(member)
        if stream is None or stream.read(4) != _ELF_MAGIC:
            continue
        parsed = read_elf(
            io.BytesIO(_ELF_MAGIC + stream.read()), posixpath.join(prefix, member.name)
        )
        if parsed is not None:
            yield parsed


def read_elf(data: BinaryIO, path: str) -> ElfFile | None:
    """The loader's view of one ELF file; None when pyelftools cannot read it."""
    # Imported here: pyelftools takes a third of a second to import, and a no-op build
    # checks nothing.
    from elftools.common.exceptions import ELFError
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    try:
        elf = ELFFile(data)
        kind = {"ET_DYN": "shared", "ET_EXEC": "executable"}.get(elf.header.e_type, "other")
        tags: dict[str, list[str]] = {
            "DT_NEEDED": [],
            "DT_SONAME": [],
            "DT_RPATH": [],
            "DT_RUNPATH": [],
        }
        for section in elf.iter_sections():
            if not isinstance(section, DynamicSection):
                continue
            for tag in section.iter_tags():
                kind_of = tag.entry.d_tag
                if kind_of == "DT_FLAGS_1" and tag.entry.d_val & _DF_1_PIE:
                    kind = "executable"  # dlopen refuses a PIE; a library with PT_INTERP loads
                elif kind_of in tags:
                    # pyelftools names the decoded string after the tag.
                    tags[kind_of].append(str(getattr(tag, kind_of[3:].lower(), "")))
            break
        elf_class, machine = elf.elfclass, str(elf.header.e_machine)
    except (ELFError, ValueError, KeyError, AttributeError):
        return None
    return ElfFile(
        path=path,
        elf_class=elf_class,
        machine=machine,
        kind=kind,
        soname=tags["DT_SONAME"][0] if tags["DT_SONAME"] else None,
        needed=tuple(tags["DT_NEEDED"]),
        rpath=tuple(f for value in tags["DT_RPATH"] for f in value.split(":") if f),
        runpath=tuple(f for value in tags["DT_RUNPATH"] for f in value.split(":") if f),
    )


@dataclass(frozen=True)
class Loader:
    """glibc's ``ld.so`` over the files the image will hold, for one platform.

    ``objects`` are the ELF files whose content was scanned (the venv, the project); every
    other path in ``files`` (the base's library folders, apt packages) counts as a native
    library whose own dependencies the image has. ``preloaded`` are the names (sonames and
    names loaded as) of what the interpreter links; ``main_rpath`` its effective DT_RPATH.
    """

    platform: str
    objects: Mapping[str, ElfFile]
    files: frozenset[str]
    system_dirs: tuple[str, ...]  # ld.so.cache's folders, then the default ones
    preloaded: frozenset[str] = frozenset()
    main_rpath: tuple[str, ...] = ()

    @classmethod
    def over(
        cls,
        platform: str,
        elves: Iterable[ElfFile],
        files: Iterable[str],
        system_dirs: Iterable[str],
        preloaded: Iterable[str] = (),
        main_rpath: Iterable[str] = (),
    ) -> Loader:
        objects = {elf.path: elf for elf in elves}
        return cls(
            platform,
            objects,
            frozenset((*files, *objects)),
            tuple(system_dirs),
            frozenset(preloaded),
            tuple(main_rpath),
        )

    def native(self, elf: ElfFile) -> bool:
        """Whether the loader of this platform can map ``elf`` at all."""
        return (elf.elf_class, elf.machine) == _MACHINES[self.platform] and elf.kind != "other"

    def missing(self, path: str) -> list[MissingLibrary]:
        """What loading ``path`` (dlopen from the interpreter, or running it when it is an
        executable) cannot find, in the order the loader meets them: the first is the one
        ``dlopen`` names."""
        return self.load(path)[1]

    def load(self, path: str) -> tuple[dict[str, str], list[MissingLibrary]]:
        """Every name the loaded objects are known by (-> path), and what was not found."""
        root = self.objects[path]
        loaded: dict[str, str] = {}  # every name an object is known by -> its path
        if root.kind == "shared":
            loaded.update(dict.fromkeys(self.preloaded, ""))
        loaded_paths = {path}
        loaded[path] = path
        if root.soname:
            loaded.setdefault(root.soname, path)
        # l_loader: who caused each object to be loaded (None: the interpreter's chain).
        loader_of: dict[str, str | None] = {path: None}
        queue = deque([root])
        missing: list[MissingLibrary] = []
        failed: set[str] = set()
        while queue:
            elf = queue.popleft()
            for name in elf.needed:
                if name in loaded or name in failed:
                    continue
                found = self._search(name, elf, loader_of)
                if found is None:
                    failed.add(name)
                    missing.append(MissingLibrary(name, elf.path, path))
                    continue
                loaded[name] = found
                if found in loaded_paths:
                    continue
                loaded_paths.add(found)
                dependency = self.objects.get(found)
                if dependency is None:
                    continue  # a base or apt library: its dependencies are there
                if dependency.soname:
                    loaded.setdefault(dependency.soname, found)
                loader_of[found] = elf.path
                queue.append(dependency)
        return loaded, missing

    def _search(
        self, name: str, requester: ElfFile, loader_of: Mapping[str, str | None]
    ) -> str | None:
        if "/" in name:
            candidate = posixpath.normpath(self._expand(name, requester.path))
            return candidate if self._usable(candidate) else None
        folders: list[str] = []
        if not requester.runpath:
            chain: str | None = requester.path
            while chain is not None:
                owner = self.objects[chain]
                folders += (self._expand(f, owner.path) for f in owner.search_rpath)
                chain = loader_of.get(chain)
            folders += self.main_rpath
        folders += (self._expand(f, requester.path) for f in requester.runpath)
        folders += self.system_dirs
        for folder in folders:
            if not folder.startswith("/"):
                continue  # relative to the working directory: never where a wheel points
            candidate = posixpath.normpath(posixpath.join(folder, name))
            if self._usable(candidate):
                return candidate
        return None

    def _usable(self, candidate: str) -> bool:
        if candidate not in self.files:
            return False
        elf = self.objects.get(candidate)
        return elf is None or self.native(elf)

    def _expand(self, folder: str, owner: str) -> str:
        origin = posixpath.dirname(owner)
        for token, value in (
            ("ORIGIN", origin),
            ("LIB", f"lib/{_triplet(self.platform)}"),
            ("PLATFORM", _PLATFORM_NAMES[self.platform]),
        ):
            folder = folder.replace("${" + token + "}", value).replace("$" + token, value)
        return folder


def _triplet(platform: str) -> str:
    return f"{_PLATFORM_NAMES[platform]}-linux-gnu"


def missing_libraries(loader: Loader, ignored: Iterable[str] = ()) -> list[MissingLibrary]:
    """What the venv's native ELF files cannot load: each library once per module that needs
    it, in order of soname. ``ignored`` sonames (the user's say-so) are left out.

    Only the files nothing else in the venv loads are loaded on their own (extension modules,
    libraries that Python code opens with ctypes, executables): a bundled library such as
    ``numpy.libs/libopenblas*.so`` finds its own dependencies through the RPATH of the
    extension that loads it, and is judged as part of that load.
    """
    skip = set(ignored)
    native = [path for path in sorted(loader.objects) if loader.native(loader.objects[path])]
    loads = {path: loader.load(path) for path in native}
    pulled = {
        found for path, (loaded, _) in loads.items() for found in loaded.values() if found != path
    }
    missing = {
        (library.soname, path): library
        for path in native
        if path not in pulled
        for library in loads[path][1]
        if library.soname not in skip
    }
    return [missing[key] for key in sorted(missing)]


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
        if data["format"] == _SCAN_FORMAT:
            return LayerScan(frozenset(data["paths"]), tuple(_elf_of(e) for e in data["elves"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    with tarfile.open(layer) as archive:
        paths = tar_paths(archive)
    with tarfile.open(layer) as archive:
        elves = tuple(elf_files_in_tar(archive))
    scan = LayerScan(frozenset(paths), elves)
    partial = sidecar.with_suffix(".part")
    partial.write_text(
        json.dumps(
            {"format": _SCAN_FORMAT, "paths": sorted(paths), "elves": [asdict(e) for e in elves]}
        )
    )
    partial.replace(sidecar)
    return scan


def _elf_of(data: Mapping[str, Any]) -> ElfFile:
    soname = data["soname"]
    return ElfFile(
        str(data["path"]),
        int(data["elf_class"]),
        str(data["machine"]),
        str(data["kind"]),
        None if soname is None else str(soname),
        *(tuple(str(v) for v in data[k]) for k in ("needed", "rpath", "runpath")),
    )


@dataclass(frozen=True)
class Verdict:
    """The check's outcome: what fails the build, and what is only a warning."""

    errors: tuple[MissingLibrary, ...]  # one per soname
    warnings: tuple[tuple[MissingLibrary, str], ...]  # per module, with why it is one

    @classmethod
    def of(
        cls,
        missing: Iterable[MissingLibrary],
        venv_names: Iterable[str],
        executables: Collection[str] = (),
    ) -> Verdict:
        """GPU-only libraries that no locked wheel ships, and libraries of modules that a plain
        import leaves alone (optional layers, programs a wheel ships such as kaleido's
        headless browser), are warnings; the rest are errors."""
        venv_names = frozenset(venv_names)
        shipped = {posixpath.basename(path) for path in venv_names}
        errors: dict[str, MissingLibrary] = {}
        warnings: list[tuple[MissingLibrary, str]] = []
        for library in missing:
            optional = next(
                (
                    why
                    for pattern, why in _OPTIONAL_MODULES.items()
                    if re.search(pattern, library.module)
                ),
                None,
            )
            if library.gpu_only and library.soname not in shipped:
                warnings.append((library, "only a GPU machine has it"))
            elif library.module in executables:
                why = "a program, which no import loads"
                if library.package:
                    why += f': add "{library.package}" to apt-packages if the project runs it'
                warnings.append((library, why))
            elif optional:
                warnings.append((library, optional))
            elif _loaded_with_its_neighbours(library, venv_names):
                why = "a program's library, whose neighbours its launcher's LD_LIBRARY_PATH finds"
                warnings.append((library, why))
            else:
                errors.setdefault(library.soname, library)
        return cls(tuple(errors.values()), tuple(warnings))


def _loaded_with_its_neighbours(library: MissingLibrary, venv_names: Collection[str]) -> bool:
    """A library that no import loads (not an extension module) and whose missing library
    ships in its own folder: a bundled program's (kaleido's browser) libraries, found through
    the LD_LIBRARY_PATH its launcher sets, or preloaded in order by the Python code using
    them. The loader is exact about the file alone; loaded that way, nothing is missing."""
    folder, name = posixpath.split(library.module)
    if _EXTENSION_MODULE.match(name) or posixpath.dirname(library.needed_by) != folder:
        return False
    return posixpath.join(folder, library.soname) in venv_names


def describe_warnings(warnings: Iterable[tuple[MissingLibrary, str]]) -> str:
    """One line: each module that will not load on this image, what it lacks, and why that
    does not stop the build."""
    by_module: dict[str, list[str]] = {}
    for library, why in warnings:
        by_module.setdefault(library.module, []).append(f"{library.soname}: {why}")
    parts = [f"{module} ({', '.join(names)})" for module, names in sorted(by_module.items())]
    count = f"{len(parts)} module{'' if len(parts) == 1 else 's'}"
    return f"warning: {count} will not load on this image: {'; '.join(parts)}"


def describe_missing(missing: list[MissingLibrary], platform: str, verbose: bool = False) -> str:
    """One line: at most three missing sonames with who needs them, and the fixes."""
    shown = missing if verbose else missing[:_SHOWN]
    parts = [f"{m.soname} (needed by {m.needed_by})" for m in shown]
    if len(missing) > len(shown):
        parts.append(f"and {len(missing) - len(shown)} more (`invoke build --verbose` lists all)")
    packages = sorted({m.package for m in missing if m.package})
    fix = []
    if packages:
        listed = ", ".join(f'"{p}"' for p in packages)
        fix.append(f"add {listed} to [tool.daskbox] apt-packages, or")
    names = ", ".join(
        [*(f'"{m.soname}"' for m in shown), *(["..."] if len(shown) < len(missing) else [])]
    )
    fix.append(
        f"if the image does load them, set [tool.daskbox] ignore-missing-libraries = [{names}]"
    )
    return (
        f"the {platform} image cannot load {len(missing)} shared "
        f"librar{'y' if len(missing) == 1 else 'ies'}: {'; '.join(parts)}: " + " ".join(fix)
    )
