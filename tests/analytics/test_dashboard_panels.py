"""The dashboard page's bandit and timeline panels, with what their endpoints answer."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import expect

from tests.analytics.dashboard_page import (
    STREAM_STATE,
    TEST_BUDGET_S,
    eventually,
    open_dashboard,
)
from tests.analytics.page_harness import PageHarness, iso
from tests.browser import NEEDS_CHROMIUM, Watched

pytestmark = NEEDS_CHROMIUM


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
