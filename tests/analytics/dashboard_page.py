"""What the dashboard page tests share: sample data and the steps to open and watch the page.

The page is served by :mod:`tests.analytics.page_harness`, a stand-in for the
analytics service.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from playwright.async_api import (
    Page,
    ViewportSize,
    expect,
)

from tests.analytics.page_harness import PageHarness, iso
from tests.browser import STEP_MS, Watched

VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
TEST_BUDGET_S = 45  # one whole test
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"


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
