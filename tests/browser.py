"""A real headless browser for the dashboard tests: Debian's chromium, driven by Playwright.

Playwright's own browser download does not work here (and would not be the browser users
have); ``executable_path`` points it at the distribution's chromium instead.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@contextlib.contextmanager
def headless_chromium(*extra_args: str) -> Iterator[Browser]:
    """Chromium with the arguments above (plus ``extra_args``); fails when it is missing."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("chromium is not installed: run `bash scripts/setup.sh`")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=[*CHROMIUM_ARGS, *extra_args]
        )
        try:
            yield browser
        finally:
            browser.close()


def first_contentful_paint(page: object) -> float | None:
    """The page's first contentful paint in seconds after navigation started, if painted."""
    milliseconds = page.evaluate(  # type: ignore[attr-defined]
        "() => performance.getEntriesByName('first-contentful-paint')"
        ".map(entry => entry.startTime)[0] ?? null"
    )
    return None if milliseconds is None else milliseconds / 1000
