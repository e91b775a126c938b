"""The report's HTML page in a real browser (Debian's Chromium, driven by Playwright).

The page is opened from its file under ``data/retros/`` (offline: it may load
nothing) and through analytics (the dashboard's "latest retro" link). Its three
charts must render with the report's points and the activity bands under them.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, expect
from redis.asyncio import Redis

from services.analytics.settings import AnalyticsSettings
from services.retro.handler import RetroHandler
from services.retro.settings import RetroSettings
from shared.events import ChatEvent, DonationEvent, EventBase
from tests.analytics.analytics_server import analytics_server
from tests.analytics.streams import STREAM, at
from tests.browser import NEEDS_CHROMIUM, Watched, watch, watched_page
from tests.orchestrator.driver import apply
from tests.readmodel.summary_streams import extended_stream
from tests.retro.helpers import end_of, hand, retro_settings

TEST_BUDGET_S = 45
EVIL = "<img src=x onerror=window.__pwned=1>"

pytestmark = NEEDS_CHROMIUM


@pytest.fixture
async def watched(browser: Browser) -> AsyncIterator[Watched]:
    async with watched_page(
        browser, viewport={"width": 1280, "height": 900}, device_scale_factor=1
    ) as seen:
        yield seen


@pytest.fixture
def settings(make_settings: Any, tmp_path: Path) -> RetroSettings:
    return retro_settings(make_settings, tmp_path)


async def build_report(redis: Redis, settings: RetroSettings) -> None:
    """The recorded stream, plus a chatter and a donor whose text is an attack."""
    c = {"channel": "demo", "source": "sim"}
    hostile: list[EventBase] = [
        ChatEvent(**c, id="evil-chat", ts=at(100), user=EVIL, text="hi"),
        DonationEvent(
            **c,
            id="evil-tip",
            ts=at(101),
            user=EVIL,
            amount="99.00",
            message="</script><script>window.__pwned = 2</script>",
        ),
    ]
    events = [*extended_stream(), *hostile]
    await apply(redis, settings.keys, events)
    await hand(redis, RetroHandler(redis, settings, out=io.StringIO()), [end_of(events, STREAM)])


CHART_STATE = """() => {
  const out = {};
  for (const id of ["viewers-chart", "chat-chart", "revenue-chart"]) {
    const chart = Chart.getChart(id);
    const canvas = document.getElementById(id);
    const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let painted = 0;
    for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted += 1;
    // The colour just above the bottom of the chart area, 10 s into each band.
    const bands = JSON.parse(document.getElementById("retro-data").textContent).bands;
    const strip = bands.map((band) => {
      const x = Math.round(chart.scales.x.getPixelForValue(band.start + 10000));
      const y = Math.round(chart.chartArea.bottom - 3);
      const p = canvas.getContext("2d").getImageData(x, y, 1, 1).data;
      return [p[0], p[1], p[2]];
    });
    out[id] = {
      type: chart.config.type,
      x: chart.scales.x.type,
      points: chart.data.datasets[0].data.length,
      painted: painted / (canvas.width * canvas.height),
      strip: strip,
    };
  }
  return out;
}"""

# The palette's first three colours, in order of first appearance: talk, q_and_a, gaming.
TALK, QA, GAMING = (31, 111, 235), (130, 80, 223), (212, 115, 27)


async def test_the_page_opens_offline_and_its_charts_render(
    watched: Watched, redis: Redis, settings: RetroSettings, tmp_path: Path
) -> None:
    async with asyncio.timeout(TEST_BUDGET_S):
        await build_report(redis, settings)
        page_file = tmp_path / "retros" / "demo" / "s-known.html"
        page = watched.page
        await page.goto(page_file.as_uri())
        await expect(page.locator("h1")).to_contain_text("Stream retro")
        await page.wait_for_function("window.streamloopRetro?.charts === 3")
        status = await page.evaluate("window.streamloopRetro")
        assert status["error"] is None
        # Viewers: 4 samples held to the end; chat: 15 minutes; revenue: start, 8 paid
        # events (the hostile 99.00 included), end.
        assert status["points"] == {"viewers-chart": 5, "chat-chart": 15, "revenue-chart": 10}
        assert status["bands"] >= 12, "4 bands drawn on each of 3 charts"
        charts = await page.evaluate(CHART_STATE)
        assert {k: (v["type"], v["x"]) for k, v in charts.items()} == {
            "viewers-chart": ("line", "linear"),
            "chat-chart": ("bar", "linear"),
            "revenue-chart": ("line", "linear"),
        }
        for name, chart in charts.items():
            assert chart["painted"] > 0.02, f"{name} is blank"
            for got, want in zip(chart["strip"], [TALK, QA, GAMING, TALK], strict=True):
                assert max(abs(a - b) for a, b in zip(got, want, strict=True)) <= 4, (name, got)
        # Hostile text is text: shown, never run.
        await expect(page.locator("#people")).to_contain_text(EVIL)
        await expect(page.locator("#donations")).to_contain_text("window.__pwned = 2")
        assert await page.evaluate("window.__pwned") is None
        assert await page.locator("#people img").count() == 0
        # Self-contained: the page asked for nothing but itself.
        assert watched.urls == [page_file.as_uri()]
        assert watched.console_errors == [] and watched.page_errors == []


async def test_the_dashboard_links_to_the_latest_retro(
    watched: Watched, redis: Redis, settings: RetroSettings, make_settings: Any
) -> None:
    analytics: AnalyticsSettings = make_settings(
        AnalyticsSettings, consumer_name="a1", consumer_block_ms=20
    )
    async with asyncio.timeout(TEST_BUDGET_S), analytics_server(analytics) as (base, _):
        page = watched.page
        await page.goto(f"{base}/?channel=demo")
        link = page.locator("#latest-retro")
        await expect(link).to_be_hidden()  # no report yet
        await build_report(redis, settings)
        await page.evaluate("window.streamloopDashboard.refreshPanels()")
        await expect(link).to_be_visible()
        assert await link.get_attribute("href") == f"{base}/retros/demo/s-known"
        assert (await link.get_attribute("title") or "").startswith("s-known · ended 2026-02-27")
        async with page.context.expect_page() as opened:
            await link.click()
        report = await opened.value
        seen = watch(report)
        await report.wait_for_function("window.streamloopRetro?.charts === 3")
        await expect(report.locator("h1")).to_contain_text("complete")
        assert await report.evaluate("window.streamloopRetro.error") is None
        assert seen.console_errors == [] and seen.page_errors == []
        # The dashboard's only error: its bandit panel's 404 (no orchestrator in this test).
        assert [e for e in watched.console_errors if "/bandit" not in e] == []
        assert watched.page_errors == []
