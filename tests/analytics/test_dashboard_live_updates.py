"""The dashboard page follows its WebSocket: tiles, chart, feed, badge, reconnects, safe text."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from playwright.async_api import expect

from tests.analytics.dashboard_page import (
    METRICS,
    STREAM_STATE,
    TEST_BUDGET_S,
    donation,
    open_dashboard,
    revenue_point,
    revenue_points,
)
from tests.analytics.page_harness import PageHarness, iso
from tests.browser import NEEDS_CHROMIUM, Watched

pytestmark = NEEDS_CHROMIUM


async def test_tiles_chart_and_feed_follow_messages(watched: Watched, harness: PageHarness) -> None:
    async with asyncio.timeout(TEST_BUDGET_S):
        page = await open_dashboard(watched, harness)
        assert await revenue_points(page) == 0

        await harness.push("stream_state", STREAM_STATE)
        await expect(page.locator("#viewers")).to_have_text("1,234")
        await expect(page.locator("#uptime")).to_have_text("1:23:45")
        await expect(page.locator("#activity")).to_have_text("Talk")
        await expect(page.locator("#chat-velocity")).to_have_text("12.5")
        await expect(page.locator("#engagement")).to_have_text("65")

        await harness.push("metrics_update", METRICS)
        await expect(page.locator("#revenue-today")).to_have_text("$150.00")
        await expect(page.locator("#subs")).to_have_text("12")
        await expect(page.locator("#bits")).to_have_text("2,500")
        await expect(page.locator("#donations-per-hour")).to_have_text("$25.00")

        await harness.push("revenue_point", revenue_point(3, 10.0, 140.0))
        await page.wait_for_function("window.streamloopDashboard.revenuePoints() === 1")
        latest = revenue_point(1, 10.0, 150.0)
        await harness.push("revenue_point", latest)
        await harness.push("revenue_point", revenue_point(2, 0.0, 140.0))  # late, out of order
        await harness.push("revenue_point", latest)  # replayed: ignored
        await page.wait_for_function("window.streamloopDashboard.revenuePoints() === 3")
        ys = await page.evaluate(
            "Chart.getChart('revenue-chart').data.datasets[0].data.map((p) => p.y)"
        )
        assert ys == [140.0, 140.0, 150.0]  # kept in time order

        await harness.push("donation", donation(1, amount=10.0, message="first!"))
        await harness.push("donation", donation(2, amount=2.5, type="bits", username="cheerer"))
        await harness.push("donation", donation(2, amount=2.5, type="bits", username="cheerer"))
        feed = page.locator("#donation-feed li")
        await expect(feed).to_have_count(2)  # the replayed id shows once
        newest = feed.nth(0)
        await expect(newest.locator(".donor")).to_have_text("cheerer")
        await expect(newest.locator(".amount")).to_have_text("$2.50")
        await expect(newest.locator(".type-badge")).to_have_text("bits")
        oldest = feed.nth(1)
        await expect(oldest.locator(".donor")).to_have_text("viewer1")
        await expect(oldest.locator(".amount")).to_have_text("$10.00")
        await expect(oldest.locator(".donation-message")).to_have_text("first!")
        await expect(oldest.locator(".type-badge")).to_have_text("donation")
        assert watched.page_errors == []


async def test_chart_and_feed_keep_only_the_latest(watched: Watched, harness: PageHarness) -> None:
    async with asyncio.timeout(TEST_BUDGET_S):
        page = await open_dashboard(watched, harness)
        start = datetime.now(UTC) - timedelta(hours=2)
        for n in range(510):
            at = iso(start + timedelta(seconds=10 * n))
            await harness.push(
                "revenue_point", {"timestamp": at, "amount": 1.0, "cumulative": n + 1.0}
            )
        for n in range(55):
            await harness.push("donation", donation(n))
        await expect(page.locator("#donation-feed li")).to_have_count(50)
        await page.wait_for_function("window.streamloopDashboard.revenuePoints() === 500")
        first_y = await page.evaluate("Chart.getChart('revenue-chart').data.datasets[0].data[0].y")
        assert first_y == 11.0  # the ten oldest points went
        await expect(page.locator("#donation-feed li").first.locator(".donor")).to_have_text(
            "viewer54"
        )
        await expect(page.locator("#donation-feed li").last.locator(".donor")).to_have_text(
            "viewer5"
        )


async def test_live_badge_flips(watched: Watched, harness: PageHarness) -> None:
    async with asyncio.timeout(TEST_BUDGET_S):
        page = await open_dashboard(watched, harness)
        badge = page.locator("#live-badge")
        await harness.push("stream_state", STREAM_STATE)
        await expect(badge).to_have_text("LIVE")
        await expect(badge).to_have_attribute("data-live", "true")
        await harness.push("stream_state", STREAM_STATE | {"isLive": False, "uptime": "0:00:00"})
        await expect(badge).to_have_text("OFFLINE")
        await expect(badge).to_have_attribute("data-live", "false")
        await harness.push("stream_state", STREAM_STATE)
        await expect(badge).to_have_text("LIVE")


async def test_reconnects_with_backoff_after_a_drop(watched: Watched, harness: PageHarness) -> None:
    async with asyncio.timeout(TEST_BUDGET_S):
        page = await open_dashboard(watched, harness)
        connection = page.locator("#connection")
        await harness.push("stream_state", STREAM_STATE)
        await expect(page.locator("#viewers")).to_have_text("1,234")

        harness.accepting = False
        await harness.drop()
        await expect(connection).to_contain_text("reconnecting")
        await expect(connection).to_have_attribute("data-state", "reconnecting")
        await expect(page.locator("body")).to_have_class(re.compile(r"\bstale\b"))
        # Refused attempts back off: 0.5 s, then 1 s, then 2 s.
        await expect(connection).to_contain_text("retry in 1.0 s")
        await expect(connection).to_contain_text("retry in 2.0 s")
        assert await page.evaluate("window.streamloopDashboard.connectionState()") == "reconnecting"

        harness.accepting = True
        await harness.wait_for_sockets(2, within=15)
        await expect(connection).to_have_text("connected", timeout=10_000)
        await expect(page.locator("body")).not_to_have_class(re.compile(r"\bstale\b"))
        assert harness.socket_queries[-1] == {"channel": "demo"}

        await harness.push("stream_state", STREAM_STATE | {"viewerCount": 99})
        await expect(page.locator("#viewers")).to_have_text("99")
        await harness.push("revenue_point", revenue_point(0, 5.0, 5.0))
        await page.wait_for_function("window.streamloopDashboard.revenuePoints() === 1")

        # A drop while connected and healthy retries at once from the shortest delay.
        await harness.drop()
        await harness.wait_for_sockets(3, within=5)
        await expect(connection).to_have_text("connected")
        assert watched.page_errors == []


async def test_untrusted_text_is_shown_as_text(watched: Watched, harness: PageHarness) -> None:
    evil = '<img src=x onerror="window.__pwned = 1"><b>bold</b>'
    harness.timeline["segments"][0]["activity"] = evil
    harness.timeline["segments"][0]["reason"] = "<script>window.__pwned = 2</script>"
    assert harness.bandit is not None
    harness.bandit["arms"][0]["arm"] = evil
    async with asyncio.timeout(TEST_BUDGET_S):
        page = await open_dashboard(watched, harness)
        await harness.push(
            "donation",
            donation(
                1, username=evil, message="<script>window.__pwned = 3</script>", type="<i>x</i>"
            ),
        )
        await harness.push("stream_state", STREAM_STATE | {"currentActivity": evil, "uptime": evil})
        item = page.locator("#donation-feed li").first
        await expect(item.locator(".donor")).to_have_text(evil)
        await expect(item.locator(".donation-message")).to_have_text(
            "<script>window.__pwned = 3</script>"
        )
        await expect(item.locator(".type-badge")).to_have_text("donation")  # unknown type
        await expect(page.locator("#activity")).to_have_text(evil)
        await expect(page.locator("#uptime")).to_have_text(evil)
        await expect(page.locator("#timeline")).to_contain_text(evil)
        await expect(page.locator("#bandit")).to_contain_text(evil)

        injected = page.locator("main img, main b, main script, main i, header img")
        assert await injected.count() == 0
        assert await page.evaluate("window.__pwned") is None
        assert not any(urlsplit(url).path == "/x" for url in watched.urls)
        assert watched.page_errors == []
