from __future__ import annotations

import pytest

from daskbox.errors import ConfigError
from daskbox.image_ref import ImageRef

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "repository", "tag", "digest", "registry"),
    [
        ("localhost:5000/quickstart", "localhost:5000/quickstart", None, None, "localhost:5000"),
        ("127.0.0.1:5000/team/app:abc", "127.0.0.1:5000/team/app", "abc", None, "127.0.0.1:5000"),
        (
            f"europe-docker.pkg.dev/p/r/app@{DIGEST}",
            "europe-docker.pkg.dev/p/r/app",
            None,
            DIGEST,
            "europe-docker.pkg.dev",
        ),
        ("python:3.11.7-slim-bookworm", "python", "3.11.7-slim-bookworm", None, "docker.io"),
        ("user/app:latest", "user/app", "latest", None, "docker.io"),
    ],
)
def test_parse_and_format_round_trip(text, repository, tag, digest, registry):
    ref = ImageRef.parse(text)
    assert (ref.repository, ref.tag, ref.digest, ref.registry) == (
        repository,
        tag,
        digest,
        registry,
    )
    assert str(ref) == text


@pytest.mark.parametrize("text", ["Upper/Case", "host:5000/", "a//b", "app:bad tag", "-lead/x", ""])
def test_invalid_names_are_one_line_errors(text):
    with pytest.raises(ConfigError, match="invalid image reference") as raised:
        ImageRef.parse(text)
    assert "\n" not in str(raised.value)


def test_pinned_needs_a_digest():
    ref = ImageRef.parse("localhost:5000/app:t")
    assert ref.with_digest(DIGEST).pinned == f"localhost:5000/app@{DIGEST}"
    with pytest.raises(ValueError):
        _ = ref.pinned
