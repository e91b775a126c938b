"""The live dashboard page in a real browser (Debian's Chromium, driven by Playwright):
loading it, access with a token, and the vendored scripts.

The page is served by :mod:`tests.analytics.page_harness`, a stand-in for the
analytics service that lets each test push WebSocket messages, drop the socket
and choose what the timeline and bandit endpoints answer.

``STREAMLOOP_SCREENSHOT=1`` also saves ``docs/dashboard.png`` (1280x800).
"""

from __future__ import annotations

import asyncio
import os
from urllib.parse import urlsplit

from playwright.async_api import expect

from shared.assets import VENDOR_DIR
from tests.analytics.dashboard_page import (
    SCREENSHOT,
    STREAM_STATE,
    TEST_BUDGET_S,
    open_dashboard,
    push_sample_session,
    revenue_points,
)
from tests.analytics.page_harness import TOKEN_REFUSED, PageHarness
from tests.browser import NEEDS_CHROMIUM, Watched

pytestmark = NEEDS_CHROMIUM


async def test_loads_clean_and_local_with_data(watched: Watched, harness: PageHarness) -> None:
    async with asyncio.timeout(TEST_BUDGET_S):
        page = await open_dashboard(watched, harness)
        await push_sample_session(harness)
        # Unknown types, junk frames and data that is not an object are ignored.
        await harness.push("mystery_type", {"anything": 1})
        await harness.push("__proto__", {"isLive": False})
        await harness.push("stream_state", "not an object")
        await harness.push_raw("this is not JSON")
        await harness.push_raw("[1, 2, 3]")

        await expect(page.locator("#revenue-today")).to_have_text("$150.00")
        await expect(page.locator("#live-badge")).to_have_text("LIVE")
        await expect(page.locator("#timeline .timeline-row")).to_have_count(4)
        await expect(page.locator("#bandit .arm")).to_have_count(3)
        await expect(page.locator("#donation-feed li")).to_have_count(3)
        assert await revenue_points(page) == 12
        # The chart itself holds the points, on a working time axis.
        chart = await page.evaluate(
            """() => {
                const chart = Chart.getChart("revenue-chart");
                return {points: chart.data.datasets[0].data.length, x: chart.scales.x.type};
            }"""
        )
        assert chart == {"points": 12, "x": "time"}

        if os.environ.get("STREAMLOOP_SCREENSHOT") == "1":
            await page.wait_for_timeout(2_600)  # let the new-donation highlight fade
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(SCREENSHOT))

        assert watched.console_errors == []
        assert watched.page_errors == []
        assert watched.non_local() == []
        paths = {urlsplit(url).path for url in watched.urls}
        assets = {path for path in paths if path.endswith((".js", ".css"))}
        assert assets == {
            "/static/dashboard.css",
            "/static/dashboard.js",
            "/static/picker.js",
            "/static/vendor/chart.umd.min.js",
            "/static/vendor/chartjs-adapter-date-fns.bundle.min.js",
        }


async def test_token_goes_to_socket_and_fetches(watched: Watched, harness: PageHarness) -> None:
    harness.token = "s3cret/+&"
    async with asyncio.timeout(TEST_BUDGET_S):
        page = await open_dashboard(watched, harness, "channel=demo&token=s3cret%2F%2B%26")
        assert harness.socket_queries == [{"channel": "demo", "token": "s3cret/+&"}]
        await expect(page.locator("#bandit .arm")).to_have_count(3)
        await expect(page.locator("#timeline .timeline-row")).to_have_count(4)
        calls = harness.api_calls
        assert calls
        assert {(call.token_query, call.authorization) for call in calls} == {
            ("s3cret/+&", "Bearer s3cret/+&")
        }


async def test_wrong_token_shows_the_servers_reason(watched: Watched, harness: PageHarness) -> None:
    harness.token = "s3cret"
    async with asyncio.timeout(TEST_BUDGET_S):
        page = watched.page
        await page.goto(f"{harness.base_url}/?channel=demo&token=wrong")
        connection = page.locator("#connection")
        await expect(connection).to_contain_text("reconnecting")
        await expect(connection).to_contain_text(TOKEN_REFUSED)
        assert harness.connected == 0


async def test_without_channel_the_server_picks(watched: Watched, harness: PageHarness) -> None:
    async with asyncio.timeout(TEST_BUDGET_S):
        page = await open_dashboard(watched, harness, query="")
        assert harness.socket_queries == [{}]
        await expect(page.locator("#channel-name")).to_have_text("#demo")
        await expect(page.locator("#timeline .timeline-row")).to_have_count(4)
        await expect(page.locator("#bandit .arm")).to_have_count(3)
        assert harness.calls_to("/api/channels")
        assert await page.evaluate("window.streamloopDashboard.channel()") == "demo"
        await harness.push("stream_state", STREAM_STATE)
        await expect(page.locator("#viewers")).to_have_text("1,234")


def test_vendored_libraries_are_recorded() -> None:
    """Every vendored script is named in vendor/README.md and keeps its licence header."""
    readme = (VENDOR_DIR / "README.md").read_text()
    scripts = sorted(VENDOR_DIR.glob("*.js"))
    assert scripts
    for script in scripts:
        assert f"`{script.name}`" in readme
        head = script.read_text()[:400]
        assert "released under the mit" in head.lower(), script.name
