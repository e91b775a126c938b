"""The browser the page tests drive: Debian's Chromium under Playwright, and a watched page.

Tests that need it mark themselves with ``pytestmark = NEEDS_CHROMIUM`` (skipped,
with the reason, where Chromium is absent) and take the ``browser`` fixture of
``tests/conftest.py``; :func:`watched_page` opens a page in a fresh context that
notes its console errors, uncaught errors and every URL it asks for.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
LAUNCH_TIMEOUT_MS = 30_000
STEP_MS = 5_000
"""One Playwright wait (an ``expect``, a navigation)."""

NEEDS_CHROMIUM = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)",
    ),
]


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, closed on the way out whatever happened."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=LAUNCH_ARGS, timeout=LAUNCH_TIMEOUT_MS
        )
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Watched:
    """A browser page and what it did: console errors, uncaught errors, URLs asked for."""

    page: Page
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)

    def non_local(self) -> list[str]:
        """Every request or socket URL that does not go to 127.0.0.1."""
        return [
            url
            for url in self.urls
            if urlsplit(url).scheme != "data" and urlsplit(url).hostname != "127.0.0.1"
        ]


@contextlib.asynccontextmanager
async def watched_page(browser: Browser, **context: Any) -> AsyncIterator[Watched]:
    """A page in a new context (``context``: Playwright's ``new_context`` options), watched.

    Each wait of the page gives up after ``STEP_MS``; the context is closed on the way out.
    """
    opened = await browser.new_context(**context)
    page = await opened.new_page()
    page.set_default_timeout(STEP_MS)
    page.set_default_navigation_timeout(STEP_MS)
    try:
        yield watch(page)
    finally:
        await opened.close()


def watch(page: Page) -> Watched:
    """Start noting what ``page`` does (a page the test did not open itself, a pop-up say)."""
    seen = Watched(page)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            seen.console_errors.append(f"{message.text} ({message.location.get('url')})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: seen.page_errors.append(str(error)))
    page.on("request", lambda request: seen.urls.append(request.url))
    page.on("websocket", lambda socket: seen.urls.append(socket.url))
    return seen
