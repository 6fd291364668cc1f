#!/usr/bin/env python3
"""Build a local stand-in for daskbox's default base image, ``python:X.Y.Z-slim-bookworm``.

Docker Hub is unreachable on the machines daskbox is developed and tested on, so the
official image cannot be pulled. This builds the nearest honest equivalent: a minimal
Debian bookworm (debootstrap, from Debian's own mirror) with *this machine's* CPython
copied to /usr/local, which is where the official image keeps its interpreter. The
tag is the default base name, so daskbox's Dockerfile (and ``docker build``) finds
it locally and pulls nothing.

For ``--platform linux/arm64`` on an x86_64 machine it debootstraps an arm64 bookworm with
Debian's own ``python3`` (this machine's CPython cannot run there), under QEMU user emulation
(``qemu-user-static`` + ``binfmt-support``, set up by scripts/setup.sh), and adds the
``/usr/local/bin/python3*`` names and ``ENV PYTHON_VERSION`` the official image has; its default
tag is ``python:<Debian's x.y.z>-slim-bookworm``. The official ``python:*`` tags are multi-platform
indexes; a local engine without the containerd store keeps one platform per name, so the tests
push both stand-ins to a registry as one index.

Usage: python3 scripts/standin_base_image.py [--platform linux/arm64] [--tag TAG] [--force]
Needs root, debootstrap and a running Docker engine. Idempotent: does nothing when the
tag already exists (unless --force).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

# What the official slim image installs besides the interpreter (its runtime libraries).
RUNTIME_PACKAGES = [
    "ca-certificates",
    # ca-certificates depends on it, so the official image has the openssl CLI too; a VM's
    # boot runs it from the image to make the cluster's CA (daskbox.gcloud.node_tls).
    "openssl",
    "netbase",
    "tzdata",
    "libssl3",
    "libffi8",
    "libsqlite3-0",
    "libbz2-1.0",
    "liblzma5",
    "zlib1g",
    "libreadline8",
    "libncursesw6",
    "libuuid1",
    "libgdbm6",
    "libexpat1",
]
# Parts of the CPython tree the official slim image also leaves out.
EXCLUDED = ["site-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3"]


NATIVE_PLATFORM = {"x86_64": "linux/amd64", "aarch64": "linux/arm64"}[platform.machine()]
DEBIAN_ARCH = {"linux/amd64": "amd64", "linux/arm64": "arm64"}
# Debian bookworm's python3 (what a foreign-platform stand-in carries).
DEBIAN_PYTHON = "3.11.2"


def default_tag(target: str = NATIVE_PLATFORM) -> str:
    version = platform.python_version() if target == NATIVE_PLATFORM else DEBIAN_PYTHON
    return f"python:{version}-slim-bookworm"


# Bumped when the stand-in gains what the official image has (2: C headers, the platform in
# the image config), so an older stand-in is rebuilt.
STANDIN_VERSION = "2"
VERSION_LABEL = "dev.daskbox.standin-version"


def image_is_current(tag: str) -> bool:
    """Whether ``tag`` exists and was made by this version of the script."""
    label = f'{{{{index .Config.Labels "{VERSION_LABEL}"}}}}'
    found = subprocess.run(
        ["docker", "image", "inspect", "--format", label, tag],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.returncode == 0 and found.stdout.strip() == STANDIN_VERSION


def copy_interpreter(rootfs: Path) -> None:
    """Copy the running CPython (without its site-packages) to rootfs/usr/local, plus pip."""
    prefix = Path(sys.base_prefix)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    target = rootfs / "usr" / "local"
    stdlib = prefix / "lib" / f"python{version}"
    shutil.copytree(
        stdlib,
        target / "lib" / f"python{version}",
        symlinks=True,
        ignore=lambda folder, names: [n for n in names if Path(folder) == stdlib and n in EXCLUDED],
    )
    site = target / "lib" / f"python{version}" / "site-packages"
    site.mkdir()
    host_site = Path(sysconfig.get_paths(vars={"base": str(prefix)})["purelib"])
    for entry in host_site.iterdir():
        if entry.name == "pip" or (entry.name.startswith("pip-") and entry.suffix == ".dist-info"):
            shutil.copytree(entry, site / entry.name, symlinks=True)
    # The C headers (the official image has them: sdists with C code compile against them).
    headers = prefix / "include" / f"python{version}"
    shutil.copytree(headers, target / "include" / f"python{version}", symlinks=True)
    for library in (prefix / "lib").glob("libpython*"):
        shutil.copy2(library, target / "lib" / library.name, follow_symlinks=False)
    binary = target / "bin"
    binary.mkdir(exist_ok=True)
    shutil.copy2(prefix / "bin" / f"python{version}", binary / f"python{version}")
    for alias in ("python3", "python"):
        (binary / alias).symlink_to(f"python{version}")
    for script in ("pip", "pip3", f"pip{version}"):
        path = binary / script
        path.write_text(
            "#!/usr/local/bin/python3\nimport sys\nfrom pip._internal.cli.main import main\n"
            "sys.exit(main())\n"
        )
        path.chmod(0o755)


def debian_python(rootfs: Path) -> str:
    """Give Debian's python3 the official image's names: /usr/local/bin/python3.X and friends."""
    (interpreter,) = sorted((rootfs / "usr" / "bin").glob("python3.[0-9]*"))
    binary = rootfs / "usr" / "local" / "bin"
    binary.mkdir(parents=True, exist_ok=True)
    for alias in (interpreter.name, "python3", "python"):
        (binary / alias).symlink_to(f"/usr/bin/{interpreter.name}")
    return DEBIAN_PYTHON


def load_image(rootfs: Path, workdir: Path, tag: str, target: str, python_version: str) -> None:
    """``docker load`` the root filesystem as a one-layer image whose config names ``target``
    (``docker import --platform`` only records it on an experimental engine)."""
    layer = workdir / "layer.tar"
    subprocess.run(
        ["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(layer), "."], check=True
    )
    digest = hashlib.sha256()
    with layer.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    os_name, architecture = target.split("/")
    config = {
        "architecture": architecture,
        "os": os_name,
        "config": {
            "Env": [
                "PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG=C.UTF-8",
                f"PYTHON_VERSION={python_version}",
            ],
            "Cmd": ["python3"],
            "Labels": {VERSION_LABEL: STANDIN_VERSION},
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{digest.hexdigest()}"]},
        "history": [{"created_by": "scripts/standin_base_image.py (debootstrap bookworm)"}],
    }
    (workdir / "config.json").write_text(json.dumps(config))
    manifest = [{"Config": "config.json", "RepoTags": [tag], "Layers": ["layer.tar"]}]
    (workdir / "manifest.json").write_text(json.dumps(manifest))
    archive = workdir / "image.tar"
    subprocess.run(
        [
            "tar",
            "-C",
            str(workdir),
            "-cf",
            str(archive),
            "manifest.json",
            "config.json",
            "layer.tar",
        ],
        check=True,
    )
    subprocess.run(
        ["docker", "load", "--input", str(archive)], check=True, stdout=subprocess.DEVNULL
    )


def build(tag: str, mirror: str, target: str = NATIVE_PLATFORM) -> None:
    native = target == NATIVE_PLATFORM
    # A foreign stand-in gets Debian's python3 and its headers (libpython3-dev).
    packages = RUNTIME_PACKAGES if native else [*RUNTIME_PACKAGES, "python3", "libpython3-dev"]
    with tempfile.TemporaryDirectory(prefix="daskbox-standin-") as workdir:
        rootfs = Path(workdir) / "rootfs"
        print(f"[standin] debootstrap {target} bookworm into {rootfs} ...", flush=True)
        subprocess.run(
            [
                "debootstrap",
                f"--arch={DEBIAN_ARCH[target]}",
                "--variant=minbase",
                f"--include={','.join(packages)}",
                "bookworm",
                str(rootfs),
                mirror,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        if native:
            python_version = platform.python_version()
            print(f"[standin] copying CPython {python_version} to /usr/local", flush=True)
            copy_interpreter(rootfs)
        else:
            python_version = debian_python(rootfs)
        # Slim images keep no apt lists, docs or man pages.
        for junk in ("var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man"):
            shutil.rmtree(rootfs / junk, ignore_errors=True)
            (rootfs / junk).mkdir(parents=True, exist_ok=True)
        subprocess.run(["chroot", str(rootfs), "ldconfig"], check=True)
        # Under emulation for a foreign platform (binfmt runs the chroot's binaries).
        subprocess.run(
            [
                "chroot",
                str(rootfs),
                "/usr/local/bin/python3",
                "-c",
                "import ssl, sqlite3, ctypes, lzma, bz2, zlib" + (", pip" if native else ""),
            ],
            check=True,
        )
        print(f"[standin] loading as {tag} ({target})", flush=True)
        load_image(rootfs, Path(workdir), tag, target, python_version)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--platform",
        default=NATIVE_PLATFORM,
        choices=sorted(DEBIAN_ARCH),
        help="target platform (default: this machine's, %(default)s)",
    )
    parser.add_argument("--tag", help="image tag (default: python:<x.y.z>-slim-bookworm)")
    parser.add_argument("--mirror", default="http://deb.debian.org/debian", help="Debian mirror")
    parser.add_argument("--force", action="store_true", help="rebuild even when the tag exists")
    args = parser.parse_args(argv)
    tag = args.tag or default_tag(args.platform)
    if image_is_current(tag) and not args.force:
        print(f"[standin] {tag} already present")
        return 0
    build(tag, args.mirror, args.platform)
    print(f"[standin] built {tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
