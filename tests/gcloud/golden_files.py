"""Compare text with a file in tests/gcloud/golden/ (DASKBOX_UPDATE_GOLDEN=1 rewrites it)."""

from __future__ import annotations

import os

from specs import GOLDEN


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("DASKBOX_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from its golden file (see the diff above)"
