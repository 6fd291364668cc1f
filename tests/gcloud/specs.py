"""A fixed LaunchSpec for golden tests (fake PEM text, so the goldens never change)."""

from __future__ import annotations

from pathlib import Path

from daskbox.gcloud.settings import LaunchSettings
from daskbox.gcloud.spec import LaunchImage, LaunchSpec, build_spec
from daskbox.gcloud.tls import ServerTLS

GOLDEN = Path(__file__).parent / "golden"
IMAGE = LaunchImage(
    reference="us-central1-docker.pkg.dev/acme/daskbox/demo@sha256:" + "ab" * 32,
    lock_hash="0123456789abcdef" * 4,
    groups=("main",),
)
FAKE_TLS = ServerTLS(
    ca_pem="-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n",
    cert_pem="-----BEGIN CERTIFICATE-----\nSERVER\n-----END CERTIFICATE-----\n",
    key_pem="-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n",
)


def fixed_spec(server_tls: ServerTLS = FAKE_TLS, **overrides: object) -> LaunchSpec:
    settings = LaunchSettings(instance="daskbox-demo", workers="4", **overrides)  # type: ignore[arg-type]
    return build_spec(
        settings, project="acme", image=IMAGE, server_tls=server_tls, ranges=("203.0.113.7/32",)
    )
