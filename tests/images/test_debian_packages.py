"""Every Debian package the library check suggests is the one bookworm's own data names.

Reads ``Contents-amd64.gz`` of bookworm main from the mirror apt uses here
(/etc/apt/sources.list.d/*.sources, or sources.list), cached under
``debian/`` of the test downloads (tests/corpus_wheels.py); skipped when the archive is unreachable.
"""

from __future__ import annotations

import gzip
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from corpus_wheels import test_downloads
from daskbox.images.libraries import DEBIAN_PACKAGES

# Where packages put libraries the loader finds (bookworm's data predates the /usr merge).
LIBRARY_DIRS = ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu", "usr/lib", "lib")


def mirror() -> str:
    """The first Debian archive URI apt is configured with (not the security archive)."""
    texts = [p.read_text() for p in sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))]
    for text in texts:
        for uri in re.findall(r"^URIs:\s*(\S+)", text, re.MULTILINE):
            if "security" not in uri:
                return uri.rstrip("/")
    listing = Path("/etc/apt/sources.list")
    if listing.is_file():
        found = re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\b", listing.read_text(), re.M)
        if found:
            return found[1].rstrip("/")
    pytest.skip("no Debian archive in apt's sources (/etc/apt/sources.list*)")


def contents_index() -> Path:
    cached = test_downloads() / "debian" / "bookworm-main-Contents-amd64.gz"
    if cached.is_file():
        return cached
    url = f"{mirror()}/dists/bookworm/main/Contents-amd64.gz"
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, partial.open("wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
    except (urllib.error.URLError, OSError) as error:
        pytest.skip(f"Debian's archive is unreachable ({url}: {error})")
    partial.replace(cached)
    return cached


@pytest.mark.network
def test_each_suggested_package_ships_that_library_in_bookworm():
    wanted = {f"{d}/{soname}": soname for soname in DEBIAN_PACKAGES for d in LIBRARY_DIRS}
    shipped: dict[str, set[str]] = {}
    with gzip.open(contents_index(), "rt", encoding="utf-8", errors="replace") as index:
        for line in index:
            path, _, locations = line.rstrip("\n").rpartition(" ")
            path = path.strip()
            if path in wanted:
                packages = {loc.rpartition("/")[2] for loc in locations.split(",")}
                shipped.setdefault(wanted[path], set()).update(packages)
    wrong = {
        soname: f"the table says {package}, Debian says {sorted(shipped.get(soname, ())) or 'none'}"
        for soname, package in DEBIAN_PACKAGES.items()
        if package not in shipped.get(soname, ())
    }
    assert not wrong, wrong
