"""The differential test's corpus: real manylinux x86_64 cp311 wheels, pinned, and their cache.

Downloaded once (``pip download --no-deps --only-binary=:all:``) into
``${XDG_CACHE_HOME:-~/.cache}/daskbox-tests/wheels``, never into the repository.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Bundled libraries (auditwheel's <pkg>.libs, RPATH or RUNPATH), system libraries, sonames a
# sibling extension loads, and a few that need what the slim base does not ship (pyodbc:
# libodbc.so.2; PyQt5 without the PyQt5-Qt5 wheel: Qt).
WHEELS = (
    "numpy==1.26.4",
    "numpy==2.2.6",
    "scipy==1.13.1",
    "pillow==11.3.0",
    "psycopg2-binary==2.9.13",
    "psycopg-binary==3.3.6",
    "shapely==2.1.2",
    "pyproj==3.7.2",
    "igraph==1.0.0",
    "lightgbm==4.7.0",
    "pyarrow==25.0.1",
    "polars-runtime-32==1.44.2",
    "opencv-python-headless==5.0.0.93",
    "grpcio==1.84.0",
    "lxml==6.1.3",
    "h5py==3.14.0",
    "netCDF4==1.7.4",
    "scikit-learn==1.9.1",
    "pandas==2.3.3",
    "matplotlib==3.11.2",
    "llvmlite==0.50.0",
    "numba==0.68.0",
    "duckdb==1.5.6",
    "orjson==3.12.0",
    "cryptography==50.0.2",
    "pyzmq==27.2.0",
    "faiss-cpu==1.15.1",
    "av==18.1.0",
    "fiona==1.10.1",
    "pyogrio==0.13.0",
    "tables==3.11.1",
    "onnxruntime==1.30.0",
    "pyodbc==5.3.0",
    "sentencepiece==0.2.2",
    "zstandard==0.25.0",
    "nvidia-cuda-runtime==13.0.96",
    "PyQt5==5.15.11",
    "pygame==2.6.1",
    "cvxopt==1.3.3",
    "cffi==2.1.1",
    "apsw==3.53.4.0",
    "cartopy==0.26.0",
    "imagecodecs==2026.3.6",
    "glfw==2.10.2",
    "casadi==3.7.2",
)


# pip matches --platform tags exactly: every manylinux tag bookworm's glibc 2.36 accepts.
_PLATFORMS = (
    "linux_x86_64",
    "manylinux1_x86_64",
    "manylinux2010_x86_64",
    "manylinux2014_x86_64",
    *(f"manylinux_2_{minor}_x86_64" for minor in range(5, 37)),
)


def test_downloads() -> Path:
    """Where pinned test inputs (wheels, Debian's indexes) are kept between runs:
    ``$DASKBOX_TEST_DOWNLOADS`` (CI keeps it while it empties daskbox's caches), else
    ``${XDG_CACHE_HOME:-~/.cache}/daskbox-tests``."""
    given = os.environ.get("DASKBOX_TEST_DOWNLOADS")
    if given:
        return Path(given)
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "daskbox-tests"


test_downloads.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def wheel_cache() -> Path:
    return test_downloads() / "wheels"


def download(requirement: str) -> Path:
    """The wheel of ``requirement`` (``name==version``) in the cache, downloaded once."""
    name, _, version = requirement.partition("==")
    folder = wheel_cache() / f"{name}-{version}"
    found = sorted(folder.glob("*.whl")) if folder.is_dir() else []
    if found:
        return found[0]
    partial = folder.with_name(folder.name + ".part")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            *(f"--platform={tag}" for tag in _PLATFORMS),
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "--abi",
            "cp311",
            "--quiet",
            "-d",
            str(partial),
            requirement,
        ],
        check=True,
    )
    partial.replace(folder)
    return next(folder.glob("*.whl"))


if __name__ == "__main__":
    for wanted in WHEELS:
        print(download(wanted), flush=True)
