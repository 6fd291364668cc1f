from __future__ import annotations

import pytest

from daskbox.errors import ConfigError
from daskbox.image_ref import ImageRef, repository_component

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


@pytest.mark.parametrize(
    ("name", "component"),
    [
        ("demo data science template", "demo-data-science-template"),  # a real project's
        ("My_App", "my-app"),
        ("quickstart", "quickstart"),
        ("--", "project"),
    ],
)
def test_a_project_name_becomes_a_valid_repository_component(name, component):
    assert repository_component(name) == component
    ImageRef.parse(f"daskbox-stages/{component}:sdists-linux-amd64")  # the registry grammar


def test_the_default_repository_of_a_project_with_spaces_in_its_name_is_valid(tmp_path):
    from daskbox.images.settings import load_settings

    (tmp_path / "pyproject.toml").write_text(
        '[tool.poetry]\nname = "demo data science template"\nversion = "0.1.0"\n'
    )
    repository = load_settings(tmp_path).repository
    assert repository == "localhost:5000/demo-data-science-template"
    ImageRef.parse(f"{repository}:latest")
