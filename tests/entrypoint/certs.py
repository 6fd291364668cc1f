"""TLS files for the entrypoint's tests: the launcher's own certificates, written to disk.

``make_tls_material`` is what `invoke launch` issues, so these tests also prove that the
certificates a launch hands the container are the ones the entrypoint accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from daskbox.gcloud.tls import make_tls_material


@dataclass(frozen=True)
class CertFiles:
    """One side's PEM files: the CA it trusts, its certificate and its key."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_authority(directory: Path, name: str) -> tuple[CertFiles, CertFiles]:
    """A fresh CA for ``name`` and the pairs it signed, written under ``directory``.

    Returns (server files, client files); both name the same CA file.
    """
    directory.mkdir(parents=True, exist_ok=True)
    material = make_tls_material(name)
    ca_file = directory / "ca.pem"
    ca_file.write_text(material.server.ca_pem)
    sides = []
    for role, pair in (("server", material.server), ("client", material.client)):
        cert_file, key_file = directory / f"{role}.pem", directory / f"{role}-key.pem"
        cert_file.write_text(pair.cert_pem)
        key_file.write_text(pair.key_pem)
        sides.append(CertFiles(ca_file, cert_file, key_file))
    return sides[0], sides[1]
