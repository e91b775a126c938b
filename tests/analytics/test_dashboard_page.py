"""The live dashboard page in a real browser (Debian's Chromium, driven by Playwright).

The page is served by :mod:`tests.analytics.page_harness`, a stand-in for the
analytics service that lets each test push WebSocket messages, drop the socket
and choose what the timeline and bandit endpoints answer.

``STREAMLOOP_SCREENSHOT=1`` also saves ``docs/dashboard.png`` (1280x800).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import (
    Browser,
    Page,
    ViewportSize,
    expect,
)

from shared.assets import VENDOR_DIR
from tests.analytics.page_harness import TOKEN_REFUSED, PageHarness, iso
from tests.browser import NEEDS_CHROMIUM, STEP_MS, Watched, watched_page

VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
TEST_BUDGET_S = 45  # one whole test
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"

pytestmark = NEEDS_CHROMIUM

STREAM_STATE = {
    "isLive": True,
    "viewerCount": 1234,
    "uptime": "1:23:45",
    "currentActivity": "talk",
    "chatVelocity": 12.5,
    "engagementScore": 65.3,
}
METRICS = {"revenueToday": 150.0, "subsCount": 12, "bitsToday": 2500, "donationsPerHour": 25.0}


def donation(n: int, **overrides: Any) -> dict[str, Any]:
    """A donation message's data, the ``n``-th of the test."""
    data = {
        "id": f"d_{n:04d}",
        "username": f"viewer{n}",
        "amount": 10.0,
        "message": "",
        "timestamp": iso(datetime.now(UTC) - timedelta(seconds=100 - n)),
        "type": "donation",
    }
    return {**data, **overrides}


def revenue_point(minutes_ago: float, amount: float, cumulative: float) -> dict[str, Any]:
    """A revenue_point message's data."""
    at = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return {"timestamp": iso(at), "amount": amount, "cumulative": cumulative}


# ------------------------------------------------------------------- fixtures


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


async def open_dashboard(
    watched: Watched, harness: PageHarness, query: str = "channel=demo"
) -> Page:
    """Load the page and wait until its socket is connected."""
    page = watched.page
    await page.goto(f"{harness.base_url}/?{query}" if query else f"{harness.base_url}/")
    await harness.wait_for_sockets(1)
    await expect(page.locator("#connection")).to_have_text("connected")
    return page


async def eventually(condition: Callable[[], bool], within: float = STEP_MS / 1000) -> None:
    """Wait until ``condition()`` holds (checked every 50 ms), or fail after ``within`` s."""
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.05)


async def revenue_points(page: Page) -> int:
    count = await page.evaluate("window.streamloopDashboard.revenuePoints()")
    assert isinstance(count, int)
    return count


async def push_sample_session(harness: PageHarness) -> None:
    """A plausible hour of stream: state, metrics, a revenue curve, a few donations."""
    await harness.push("stream_state", STREAM_STATE)
    await harness.push("metrics_update", METRICS)
    cumulative = 0.0
    amounts = [5.0, 2.5, 10.0, 1.0, 20.0, 4.99, 7.5, 3.0, 15.0, 2.0, 50.0, 5.0]
    for step, amount in enumerate(amounts):
        cumulative += amount
        await harness.push("revenue_point", revenue_point(90 - step * 7, amount, cumulative))
    await harness.push("donation", donation(1, username="night_owl", amount=5.0, message="gg"))
    await harness.push("donation", donation(2, username="cheer_bot", amount=2.5, type="bits"))
    await harness.push(
        "donation",
        donation(3, username="big_fan", amount=50.0, message="for the next game, pick a hard one"),
    )


# ---------------------------------------------------------------------- tests


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


async def test_bandit_panel_renders_arms(watched: Watched, harness: PageHarness) -> None:
    async with asyncio.timeout(TEST_BUDGET_S):
        page = await open_dashboard(watched, harness)
        arms = page.locator("#bandit .arm")
        await expect(arms).to_have_count(3)
        # Highest mean first.
        await expect(arms.locator(".arm-name")).to_have_text(["Game", "Talk", "React"])
        await expect(arms.locator(".arm-mean")).to_have_text(["0.67", "0.60", "0.25"])
        talk = page.locator('#bandit .arm[data-arm="talk"]')
        # Uncertainty in reward units and the chunks behind it, then the Beta's parameters.
        await expect(talk.locator(".arm-params")).to_have_text(
            "± 0.20 · 4 chunks · \u03b1 3.0 · \u03b2 2.0"
        )
        width = await talk.locator(".arm-fill").evaluate("(fill) => fill.style.width")
        assert width == "60%"
        # The arm on air is marked.
        await harness.push("stream_state", STREAM_STATE)
        await expect(talk).to_have_class(re.compile(r"\bcurrent\b"))
        await expect(page.locator("#bandit .arm.current")).to_have_count(1)


@pytest.mark.parametrize("failure", ["404", "network error"])
async def test_bandit_panel_without_a_bandit(
    watched: Watched, harness: PageHarness, failure: str
) -> None:
    if failure == "404":
        harness.bandit = None
    else:
        await watched.page.route("**/api/channels/*/bandit*", lambda route: route.abort())
    async with asyncio.timeout(TEST_BUDGET_S):
        page = await open_dashboard(watched, harness)
        await expect(page.locator("#bandit")).to_have_text("bandit not running yet")
        await expect(page.locator("#timeline .timeline-row")).to_have_count(4)  # unaffected
        assert watched.page_errors == []


async def test_timeline_renders_and_refetches(watched: Watched, harness: PageHarness) -> None:
    async with asyncio.timeout(TEST_BUDGET_S):
        page = watched.page
        await page.clock.install()
        page = await open_dashboard(watched, harness)
        rows = page.locator("#timeline .timeline-row")
        await expect(rows).to_have_count(4)
        await expect(page.locator("#timeline .timeline-block")).to_have_count(4)
        await expect(rows.locator(".activity-chip")).to_have_text(["Talk", "React", "Game", "Talk"])
        await expect(rows.first).to_have_class(re.compile(r"\bon-air\b"))
        await expect(rows.first.locator(".timeline-duration")).to_contain_text("on air")
        await expect(rows.nth(2).locator(".timeline-duration")).to_have_text("40m 00s")
        assert len(harness.calls_to("/timeline")) == 1

        # The first stream_state only tells the current activity: no refetch.
        await harness.push("stream_state", STREAM_STATE)
        await expect(page.locator("#activity")).to_have_text("Talk")
        assert len(harness.calls_to("/timeline")) == 1

        # A new activity refetches the timeline (and the bandit).
        harness.timeline["segments"][-1]["end"] = iso(datetime.now(UTC))
        harness.timeline["segments"].append(
            {
                "activity": "game",
                "start": iso(datetime.now(UTC)),
                "end": None,
                "decided_by": "bandit",
                "reason": "test",
            }
        )
        await harness.push("stream_state", STREAM_STATE | {"currentActivity": "game"})
        await expect(rows).to_have_count(5)
        await expect(rows.first.locator(".activity-chip")).to_have_text("Game")
        assert len(harness.calls_to("/timeline")) == 2
        assert len(harness.calls_to("/bandit")) == 2

        # And every 30 s regardless.
        await page.clock.fast_forward(30_500)
        await eventually(lambda: len(harness.calls_to("/timeline")) == 3)
        await eventually(lambda: len(harness.calls_to("/bandit")) == 3)


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


async def test_event_time_durations_names_reasons_and_fixed_colours(
    watched: Watched, harness: PageHarness
) -> None:
    """A simulator faster than real time: the on-air duration is the server's, not
    the browser clock's; names read as a person writes them; reasons read once."""
    async with asyncio.timeout(TEST_BUDGET_S):
        long_ago = datetime(2026, 2, 27, 10, 0, tzinfo=UTC)
        harness.timeline["segments"] = [
            {
                "activity": "q_and_a",
                "start": iso(long_ago),
                "end": iso(long_ago + timedelta(minutes=5)),
                "decided_by": "bandit",
                "reason": "bandit sampled q_and_a highest",
                "duration_s": 300.0,
            },
            {
                "activity": "music",
                "start": iso(long_ago + timedelta(minutes=5)),
                "end": None,
                "decided_by": "claude",
                "reason": "calm the room",
                "duration_s": 125.0,
            },
        ]
        page = await open_dashboard(watched, harness)
        rows = page.locator("#timeline .timeline-row")
        await expect(rows).to_have_count(2)
        await expect(rows.first.locator(".timeline-duration")).to_have_text("2m 05s · on air")
        await expect(rows.locator(".activity-chip")).to_have_text(["Music", "Q&A"])
        await expect(rows.locator(".timeline-reason")).to_have_text(
            ["claude: calm the room", "bandit sampled q_and_a highest"]
        )
        await harness.push("stream_state", STREAM_STATE | {"currentActivity": "q_and_a"})
        await expect(page.locator("#activity")).to_have_text("Q&A")
        await harness.push("activity_names", {"q_and_a": "Ask me anything"})
        await expect(page.locator("#activity")).to_have_text("Ask me anything")
        colour = await page.locator("#activity").evaluate("e => e.style.color")
        await page.reload()
        await harness.wait_for_sockets(2)
        await harness.push("stream_state", STREAM_STATE | {"currentActivity": "q_and_a"})
        await expect(page.locator("#activity")).to_have_text("Q&A")
        assert await page.locator("#activity").evaluate("e => e.style.color") == colour
        assert colour == "rgb(210, 168, 255)", "q_and_a's own colour, whatever came first"
        assert watched.page_errors == []
