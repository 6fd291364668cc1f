"""The library check against the real loader, on real wheels (tests/corpus_wheels.py).

Every ELF shared object of the unpacked wheels is opened with ``ctypes.CDLL`` in a container
of the stand-in base image, the wheels mounted read-only where the image's site-packages is,
and ``Loader``'s verdict for the same file is compared: "resolves", or the first library
missing (the one ``dlopen`` names). How dlopen's errors count:
- ``<name>: cannot open shared object file`` and ``<name>: wrong ELF class`` (no candidate of
  this class) name a missing library;
- any other error (an undefined symbol, a static TLS block, a constructor that crashed or
  hung) happens after ld.so mapped every dependency, so it counts as "resolves";
- executables (ET_EXEC, or PIE: dlopen refuses them) and other platforms' files are not compared.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import zipfile
from collections import Counter
from pathlib import Path

import docker
import pytest

from corpus_wheels import WHEELS, download, wheel_cache
from daskbox import contract
from daskbox.images.base import BaseImage, resolve_base
from daskbox.images.libraries import _ELF_MAGIC, ElfFile, Loader, read_elf

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SITE = f"{contract.VENV}/lib/python3.11/site-packages"
# Runs in the container: one fork per file, so each load starts from the interpreter alone.
PROBE = r"""
import ctypes, json, os, signal, sys
paths = json.load(open(sys.argv[1]))
for path in paths:
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read)
        signal.alarm(30)
        try:
            ctypes.CDLL(path)
            error = None
        except OSError as failure:
            error = str(failure)
        os.write(write, json.dumps(error).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer:
        text = answer.read()
    _, status = os.waitpid(child, 0)
    print(json.dumps([path, json.loads(text) if text else f"died: status {status}"]), flush=True)
"""


def environments() -> list[list[str]]:
    """The corpus as few environments as no distribution is in one twice (numpy 1 and 2)."""
    groups: list[list[str]] = []
    for wanted in WHEELS:
        name = wanted.partition("==")[0]
        for group in groups:
            if all(other.partition("==")[0] != name for other in group):
                group.append(wanted)
                break
        else:
            groups.append([wanted])
    return groups


def unpacked(group: list[str]) -> Path:
    """The group's wheels as site-packages holds them (purelib/platlib data moved up; the
    other ``.data`` parts, installed outside site-packages, left out). Cached."""
    folder = wheel_cache().parent / "unpacked" / group[0].replace("==", "-")
    stamp = folder / ".complete"
    if stamp.is_file() and stamp.read_text() == "\n".join(group):
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for wanted in group:
        with zipfile.ZipFile(download(wanted)) as wheel:
            for member in wheel.infolist():
                parts = member.filename.split("/")
                if parts[0].endswith(".data"):
                    if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                        continue
                    parts = parts[2:]
                target = folder.joinpath(*parts)
                if member.is_dir():
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(wheel.read(member))
    stamp.write_text("\n".join(group))
    return folder


def scanned(folder: Path) -> tuple[list[ElfFile], set[str]]:
    elves: list[ElfFile] = []
    files: set[str] = set()
    for root, _, names in os.walk(folder):
        for name in names:
            local = Path(root, name)
            inside = f"{SITE}/{local.relative_to(folder).as_posix()}"
            files.add(inside)
            with local.open("rb") as stream:
                if stream.read(4) != _ELF_MAGIC:
                    continue
                stream.seek(0)
                elf = read_elf(stream, inside)
            if elf is not None:
                elves.append(elf)
    return elves, files


def loads_in_container(
    client: docker.DockerClient, image: str, folder: Path, paths: list[str], work: Path
) -> dict[str, str | None]:
    listing = work / "paths.json"
    listing.write_text(json.dumps(paths))
    (work / "probe.py").write_text(PROBE)
    output = client.containers.run(
        image,
        ["python3", "/probe/probe.py", "/probe/paths.json"],
        volumes={
            str(folder): {"bind": SITE, "mode": "ro"},
            str(work): {"bind": "/probe", "mode": "ro"},
        },
        network_disabled=True,
        remove=True,
        platform="linux/amd64",
    )
    answers = [json.loads(line) for line in output.decode().splitlines() if line.startswith("[")]
    return {path: error for path, error in answers}


def truth(path: str, error: str | None) -> str | None:
    """The library dlopen names as missing, or None when every library was found."""
    if error is None:
        return None
    subject, _, reason = error.partition(": ")
    if subject != path and reason.startswith(("cannot open shared object file", "wrong ELF class")):
        return subject
    return None


def base_facts(base_image: str) -> BaseImage:
    from daskbox.images.engine import DockerEngine

    return resolve_base(DockerEngine(), base_image, "linux/amd64", lambda line: None)


@pytest.mark.skipif(
    platform.machine() != "x86_64" or platform.python_version_tuple()[:2] != ("3", "11"),
    reason="the corpus is cp311 manylinux x86_64 wheels: needs CPython 3.11 on x86_64",
)
def test_the_check_agrees_with_the_real_loader_on_real_wheels(docker_client, base_image, tmp_path):
    base = base_facts(base_image)
    disagreements: list[str] = []
    kinds: Counter[str] = Counter()
    for index, group in enumerate(environments()):
        folder = unpacked(group)
        elves, files = scanned(folder)
        loader = Loader.over(
            "linux/amd64",
            elves,
            files | {f"{d}/{n}" for d in base.library_dirs for n in base.libraries},
            base.library_dirs,
            base.preloaded,
            base.main_rpath,
        )
        compared = sorted(e.path for e in elves if loader.native(e) and e.kind == "shared")
        kinds["not compared (executables, other platforms)"] += len(elves) - len(compared)
        work = tmp_path / str(index)
        work.mkdir()
        real = loads_in_container(docker_client, base_image, folder, compared, work)
        for path in compared:
            if path not in real:
                disagreements.append(f"{path}: the container gave no answer")
                continue
            expected = truth(path, real[path])
            missing = loader.missing(path)
            verdict = missing[0].soname if missing else None
            kinds["resolves" if expected is None else "missing a library"] += 1
            if real[path] is not None and expected is None:
                kinds["other dlopen error, counted as resolves"] += 1
            if verdict != expected:
                disagreements.append(
                    f"{path}: the check says {verdict or 'resolves'}, "
                    f"the loader {real[path] or 'resolves'}"
                )
    compared_count = kinds["resolves"] + kinds["missing a library"]
    print(f"\n{compared_count} files compared: {dict(kinds)}")
    for line in disagreements:
        print(line)
    assert len(WHEELS) >= 30 and compared_count > len(WHEELS), "the corpus shrank"
    assert not disagreements, f"{len(disagreements)} disagreements (listed above)"
