"""ImageRef: parse and format ``registry/repository:tag@sha256:digest`` references."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from daskbox.errors import ConfigError

# The grammar of github.com/distribution/reference, which every OCI registry enforces.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = (
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*"
    r"(?::[0-9]+)?"
)
_REFERENCE = re.compile(
    rf"^(?P<repository>(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
_DEFAULT_REGISTRY = "docker.io"


def repository_component(name: str) -> str:
    """``name`` (a project's, which Poetry lets hold spaces or capitals) as one path component
    of a repository name: lower case, every run of other characters one ``-``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "project"


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference; ``repository`` includes the registry host when there is one."""

    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """Parse ``text``; an invalid name is a one-line ConfigError naming the rule it breaks."""
        match = _REFERENCE.match(text.strip())
        if match is None or len(match["repository"]) > 255:
            raise ConfigError(
                f"invalid image reference {text!r}: use lowercase "
                "host[:port]/path[:tag] (letters, digits, '.', '_', '-'), "
                "e.g. localhost:5000/my-project"
            )
        return cls(match["repository"], match["tag"], match["digest"])

    @property
    def registry(self) -> str:
        """The registry host (``docker.io`` when the first component is not a host)."""
        first, _, rest = self.repository.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            return first
        return _DEFAULT_REGISTRY

    def with_tag(self, tag: str) -> ImageRef:
        """This repository with ``tag`` (and no digest)."""
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str) -> ImageRef:
        """This reference pinned to ``digest``."""
        return replace(self, digest=digest)

    @property
    def pinned(self) -> str:
        """``repository@sha256:...``: what everything downstream of a push should use."""
        if self.digest is None:
            raise ValueError(f"{self} has no digest")
        return f"{self.repository}@{self.digest}"

    def __str__(self) -> str:
        text = self.repository
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text
