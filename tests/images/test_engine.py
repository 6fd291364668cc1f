"""The engine seam's error wording: each registry failure gets the hint for its kind."""

from __future__ import annotations

import pytest

from daskbox.image_ref import ImageRef
from daskbox.images.engine import DockerEngine, registry_error

REFERENCE = ImageRef.parse("127.0.0.1:5000/app:abc")


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        (
            'Get "https://127.0.0.1:5000/v2/": dial tcp 127.0.0.1:5000: '
            "connect: connection refused",
            "unreachable",
        ),
        ('Get "https://127.0.0.1:5000/v2/": EOF', "unreachable"),
        ('Get "https://127.0.0.1:5000/v2/": net/http: TLS handshake timeout', "unreachable"),
        ("unauthorized: authentication required", "refused the credentials"),
        ("invalid reference format: repository name must be lowercase", "rejects the repository"),
        # Not transport failures: a bare "timeout" or "EOF" inside must not say "unreachable".
        ("blob upload invalid: upload session timeout exceeded", "error for"),
        ("manifest invalid: unexpected EOF in manifest body", "error for"),
    ],
)
def test_registry_errors_name_their_kind(message, kind):
    error = str(registry_error(REFERENCE, message))
    assert kind in error and message in error and "\n" not in error


@pytest.mark.docker
def test_tag_needs_a_tag(docker_client):
    with pytest.raises(ValueError, match="has no tag"):
        DockerEngine(docker_client).tag("sha256:" + "0" * 64, ImageRef.parse("localhost:5000/x"))
