"""The dashboard page's stand-in server, and a browser page watched for errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser

from tests.analytics.dashboard_page import VIEWPORT
from tests.analytics.page_harness import PageHarness
from tests.browser import Watched, watched_page


@pytest.fixture
async def harness() -> AsyncIterator[PageHarness]:
    server = PageHarness()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def watched(browser: Browser, harness: PageHarness) -> AsyncIterator[Watched]:
    async with watched_page(browser, viewport=VIEWPORT) as seen:
        yield seen
