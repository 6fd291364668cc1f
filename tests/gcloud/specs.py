"""A fixed LaunchSpec for golden tests (a fake client CA, so the goldens never change)."""

from __future__ import annotations

from pathlib import Path

from daskbox.gcloud.settings import LaunchSettings
from daskbox.gcloud.spec import LaunchImage, LaunchSpec, build_spec

GOLDEN = Path(__file__).parent / "golden"
IMAGE = LaunchImage(
    reference="us-central1-docker.pkg.dev/acme/daskbox/demo@sha256:" + "ab" * 32,
    lock_hash="0123456789abcdef" * 4,
    groups=("main",),
)
FAKE_CLIENT_CA = "-----BEGIN CERTIFICATE-----\nCLIENT CA\n-----END CERTIFICATE-----\n"


def fixed_spec(
    client_ca_pem: str = FAKE_CLIENT_CA,
    image: LaunchImage = IMAGE,
    ranges: tuple[str, ...] = ("203.0.113.7/32",),
    **overrides: object,
) -> LaunchSpec:
    values: dict[str, object] = {"instance": "daskbox-demo", "workers": "4", **overrides}
    settings = LaunchSettings(**values)  # type: ignore[arg-type]
    return build_spec(
        settings,
        project="acme",
        project_name="demo",
        image=image,
        client_ca_pem=client_ca_pem,
        tls_days=2,
        ranges=ranges,
    )
