#!/usr/bin/env python3
"""Build a local stand-in for daskbox's default base image, ``python:X.Y.Z-slim-bookworm``.

Docker Hub is unreachable on the machines daskbox is developed and tested on, so the
official image cannot be pulled. This builds the nearest honest equivalent: a minimal
Debian bookworm (debootstrap, from Debian's own mirror) with *this machine's* CPython
copied to /usr/local, which is where the official image keeps its interpreter. The
tag is the default base name, so daskbox's Dockerfile (and ``docker build``) finds
it locally and pulls nothing.

Usage: python3 scripts/standin_base_image.py [--force] [--mirror URL]
Needs root, debootstrap and a running Docker engine. Idempotent: does nothing when the
tag already exists (unless --force).
"""

from __future__ import annotations

import argparse
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


def default_tag() -> str:
    return f"python:{platform.python_version()}-slim-bookworm"


def image_exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


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


def build(tag: str, mirror: str) -> None:
    with tempfile.TemporaryDirectory(prefix="daskbox-standin-") as workdir:
        rootfs = Path(workdir) / "rootfs"
        print(f"[standin] debootstrap bookworm into {rootfs} ...", flush=True)
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(RUNTIME_PACKAGES)}",
                "bookworm",
                str(rootfs),
                mirror,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print(f"[standin] copying CPython {platform.python_version()} to /usr/local", flush=True)
        copy_interpreter(rootfs)
        # Slim images keep no apt lists, docs or man pages.
        for junk in ("var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man"):
            shutil.rmtree(rootfs / junk, ignore_errors=True)
            (rootfs / junk).mkdir(parents=True, exist_ok=True)
        subprocess.run(["chroot", str(rootfs), "ldconfig"], check=True)
        subprocess.run(
            [
                "chroot",
                str(rootfs),
                "/usr/local/bin/python3",
                "-c",
                "import ssl, sqlite3, ctypes, lzma, bz2, zlib, pip",
            ],
            check=True,
        )
        print(f"[standin] importing as {tag}", flush=True)
        tar = subprocess.Popen(
            ["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE
        )
        subprocess.run(
            [
                "docker",
                "import",
                "--change",
                "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--change",
                "ENV LANG=C.UTF-8",
                "--change",
                f"ENV PYTHON_VERSION={platform.python_version()}",
                "--change",
                'CMD ["python3"]',
                "-",
                tag,
            ],
            stdin=tar.stdout,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        if tar.wait() != 0:
            raise SystemExit("[standin] tar of the root filesystem failed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tag", default=default_tag(), help="image tag (default: %(default)s)")
    parser.add_argument("--mirror", default="http://deb.debian.org/debian", help="Debian mirror")
    parser.add_argument("--force", action="store_true", help="rebuild even when the tag exists")
    args = parser.parse_args(argv)
    if image_exists(args.tag) and not args.force:
        print(f"[standin] {args.tag} already present")
        return 0
    build(args.tag, args.mirror)
    print(f"[standin] built {args.tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
