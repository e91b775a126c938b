"""Every channel at a glance: the paginated channel list and the overview page.

The real analytics app on a real Redis serves ``CHANNELS`` of 250 names, one of
them with a known stream applied; the lease of one live channel is set the way
an orchestrator replica sets it, so health can be told apart.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import async_playwright, expect
from redis.asyncio import Redis

from services.analytics.settings import AnalyticsSettings
from shared.publisher import Publisher
from tests.analytics.analytics_server import analytics_server
from tests.analytics.streams import known_stream

CHANNELS = ["demo", *[f"ch{n:03d}" for n in range(249)]]
CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture
async def served(make_settings, redis: Redis) -> AsyncIterator[tuple[str, AnalyticsSettings]]:
    settings: AnalyticsSettings = make_settings(
        AnalyticsSettings,
        channels=",".join(CHANNELS),
        consumer_name="a1",
        consumer_block_ms=20,
        broadcast_interval_s=0.1,
    )
    events = known_stream("ch007")
    async with analytics_server(settings) as (base, _):
        await Publisher(redis, settings).publish_many(events)
        async with asyncio.timeout(10):
            while await redis.hget(settings.keys.metrics("ch007"), "version") != str(len(events)):
                await asyncio.sleep(0.05)
        yield base, settings


async def test_pages_follow_the_configured_order_with_total_and_next_link(served) -> None:
    base, _ = served
    async with httpx.AsyncClient(base_url=base) as api:
        first = await api.get("/api/channels", params={"limit": 100})
        last = await api.get("/api/channels", params={"offset": 200, "limit": 100})
    assert [row["channel"] for row in first.json()] == CHANNELS[:100]
    assert first.headers["x-total-count"] == "250"
    assert re.fullmatch(r'<http://[^>]*offset=100&limit=100>; rel="next"', first.headers["link"])
    assert [row["channel"] for row in last.json()] == CHANNELS[200:]
    assert "link" not in last.headers


async def test_default_page_is_one_hundred_and_the_limit_is_bounded(served) -> None:
    base, _ = served
    async with httpx.AsyncClient(base_url=base) as api:
        default = await api.get("/api/channels")
        too_many = await api.get("/api/channels", params={"limit": 1001})
        negative = await api.get("/api/channels", params={"offset": -1})
        past_the_end = await api.get("/api/channels", params={"offset": 5000})
    assert len(default.json()) == 100
    assert too_many.status_code == negative.status_code == 422
    assert past_the_end.status_code == 200 and past_the_end.json() == []


async def test_rows_carry_the_live_figures_and_health(served, redis: Redis) -> None:
    base, settings = served
    async with httpx.AsyncClient(base_url=base) as api:
        before = {row["channel"]: row for row in (await api.get("/api/channels")).json()}
        await redis.set(settings.keys.orchestrator_lease("ch007"), "replica-a", px=10_000)
        after = {row["channel"]: row for row in (await api.get("/api/channels")).json()}
    live = before["ch007"]
    assert live["is_live"] is True and live["current_activity"] == "q_and_a"
    assert live["viewer_count"] == 60 and live["revenue_stream"] == 25.0
    assert live["health"] == "no orchestrator" and live["orchestrator"] == ""
    assert after["ch007"]["health"] == "ok" and after["ch007"]["orchestrator"] == "replica-a"
    idle = before["demo"]
    assert idle["is_live"] is False and idle["health"] == "offline" and idle["viewer_count"] == 0


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium")
async def test_overview_page_lists_pages_and_links_each_dashboard(served) -> None:
    base, _ = served
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = await browser.new_page()
            page.set_default_timeout(5_000)
            await page.goto(f"{base}/channels")
            rows = page.locator("#overview-rows tr")
            await expect(rows).to_have_count(50)
            await expect(page.locator("#overview-page")).to_have_text("1\u201350 of 250")
            await expect(page.locator("#overview-prev")).to_be_disabled()
            await page.click("#overview-next")
            await expect(page.locator("#overview-page")).to_have_text("51\u2013100 of 250")
            await expect(rows.first).to_have_attribute("data-channel", CHANNELS[50])
            await page.click("#overview-prev")
            live = page.locator('#overview-rows tr[data-channel="ch007"]')
            await expect(live.locator(".health")).to_have_text("no orchestrator")
            await expect(live).to_contain_text("q_and_a")
            await live.locator("a").click()
            await page.wait_for_url(re.compile(r"/\?channel=ch007$"))
            await expect(page.locator("#channel-picker")).to_have_value("ch007")
            await page.select_option("#channel-picker", "ch042")
            await page.wait_for_url(re.compile(r"/\?channel=ch042$"))
        finally:
            await browser.close()
