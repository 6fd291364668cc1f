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


class _StreamingApi:
    """The Engine API's build stream as the classic builder sends it, and what is removed."""

    def __init__(self, chunks: list[dict[str, str]]) -> None:
        self.chunks = chunks
        self.removed: list[str] = []

    def build(self, **_: object) -> list[dict[str, str]]:
        return self.chunks

    def remove_image(self, image: str, noprune: bool = False) -> None:
        self.removed.append(image)


def test_a_failed_build_removes_only_the_steps_it_made_not_cached_ones():
    """A cached step belongs to an earlier build (or one running beside this one, whose
    build then failed with "unknown parent image ID" in CI): a failed build leaves it."""
    import io
    from types import SimpleNamespace

    from daskbox.images.engine import BuildStepFailed

    api = _StreamingApi(
        [
            {"stream": "Step 1/3 : FROM python:3.11.7-slim-bookworm\n"},
            {"stream": " ---> ed7d751339c5\n"},
            {"stream": "Step 2/3 : RUN apt-get install libgomp1\n"},
            {"stream": " ---> Using cache\n"},
            {"stream": " ---> 9b2349e8731a\n"},
            {"stream": "Step 3/3 : COPY venv /opt/venv\n"},
            {"stream": " ---> 1c2d3e4f5a6b\n"},
            {"error": "no space left on device"},
        ]
    )
    engine = DockerEngine(SimpleNamespace(api=api))  # type: ignore[arg-type]
    with pytest.raises(BuildStepFailed):
        engine.build(io.BytesIO(b""), "app:1", {}, progress=lambda line: None)
    assert api.removed == ["1c2d3e4f5a6b"]  # neither the cached step nor the base
