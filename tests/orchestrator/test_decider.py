"""Decisions: context from real metrics, Claude first, the bandit as fallback, the dwell rule."""

from __future__ import annotations

from collections.abc import AsyncIterator
from zoneinfo import ZoneInfo

import pytest
from redis.asyncio import Redis

from services.analytics.metrics import MetricsComputer, Windows
from services.orchestrator.claude import ClaudeAdvisor
from services.orchestrator.context import MetricsReader, describe
from services.orchestrator.decider import Orchestrator
from shared.bandit import ThompsonBandit
from tests.analytics.streams import known_stream
from tests.orchestrator.anthropic_double import (
    AnthropicDouble,
    anthropic_double,
    error,
    tool_use,
)
from tests.orchestrator.driver import apply

ACTIVITIES = ["talk", "q_and_a", "gameplay", "react", "music"]


async def favour(bandit: ThompsonBandit, arm: str) -> None:
    """Evidence strong enough that every draw suggests ``arm``.

    200 wins for ``arm`` and 200 losses for every other arm: Beta(201, 1) against
    Beta(1, 201), so another arm outdraws it with odds far below 1e-50.
    """
    for _ in range(200):
        for other in ACTIVITIES:
            await bandit.update(other, 1.0 if other == arm else 0.0)


@pytest.fixture
async def double() -> AsyncIterator[AnthropicDouble]:
    async with anthropic_double() as running:
        yield running


@pytest.fixture
async def live_channel(redis: Redis, make_settings) -> MetricsReader:
    """Channel ``demo`` with the known stream's figures computed by analytics' own code."""
    keys = make_settings().keys
    await apply(redis, keys, known_stream())
    await MetricsComputer(redis, keys, Windows(60_000, 300_000), ZoneInfo("UTC")).recompute("demo")
    return MetricsReader(redis, keys)


async def test_context_is_built_from_the_metrics_in_redis(live_channel: MetricsReader) -> None:
    figures = await live_channel.figures("demo")
    assert describe(figures, "music", figures.current_activity) == (
        f"Stream state: 60 viewers, chat velocity 30 msg/min, engagement "
        f"{figures.engagement:g}/100, revenue $90/hr. Bandit suggests: music. "
        "Current activity: q_and_a."
    )


async def test_claude_decides_when_it_answers_with_a_tool_call(
    redis: Redis, make_settings, live_channel: MetricsReader, double: AnthropicDouble
) -> None:
    keys = make_settings().keys
    await favour(ThompsonBandit(redis, keys, "demo", ACTIVITIES), "gameplay")
    double.replies = [tool_use(("switch_activity", {"activity": "music", "reason": "calm down"}))]
    advisor = ClaudeAdvisor(
        api_key="k",
        model="claude-haiku-5-5",
        activities=ACTIVITIES,
        timeout_s=2,
        max_retries=0,
        base_url=double.url,
    )
    orchestrator = Orchestrator(
        ACTIVITIES,
        advisor=advisor,
        metrics=live_channel,
        bandits=lambda ch: ThompsonBandit(redis, keys, ch, ACTIVITIES),
    )
    decision = await orchestrator.decide("demo", "q_and_a", 1, on_air_s=600)
    await advisor.close()
    assert (decision.action, decision.activity, decision.decided_by) == (
        "switch",
        "music",
        "claude",
    )
    assert decision.suggestion == "gameplay" and decision.previous == "q_and_a"
    assert "Bandit suggests: gameplay." in double.requests[0]["messages"][0]["content"]
    recorded = decision.fields()
    assert int(recorded["tokens_in"]) > 0 and int(recorded["tokens_out"]) > 0
    assert float(recorded["cost_usd"]) > 0 and "claude_latency_ms" in recorded


async def test_a_failed_claude_call_falls_back_to_the_bandit_and_says_why(
    redis: Redis, make_settings, live_channel: MetricsReader, double: AnthropicDouble
) -> None:
    keys = make_settings().keys
    await favour(ThompsonBandit(redis, keys, "demo", ACTIVITIES), "react")
    double.replies = [error(500, "api_error")]
    advisor = ClaudeAdvisor(
        api_key="k",
        model="claude-haiku-5-5",
        activities=ACTIVITIES,
        timeout_s=2,
        max_retries=0,
        base_url=double.url,
    )
    orchestrator = Orchestrator(
        ACTIVITIES,
        advisor=advisor,
        metrics=live_channel,
        bandits=lambda ch: ThompsonBandit(redis, keys, ch, ACTIVITIES),
    )
    decision = await orchestrator.decide("demo", "talk", 1, on_air_s=600)
    await advisor.close()
    assert (decision.activity, decision.decided_by) == ("react", "bandit")
    assert "HTTP 500" in decision.fallback


async def test_without_an_api_key_the_bandit_decides(
    redis: Redis, make_settings, live_channel: MetricsReader
) -> None:
    keys = make_settings().keys
    advisor = ClaudeAdvisor(
        api_key="", model="m", activities=ACTIVITIES, timeout_s=1, max_retries=0
    )
    orchestrator = Orchestrator(
        ACTIVITIES,
        advisor=advisor,
        metrics=live_channel,
        bandits=lambda ch: ThompsonBandit(redis, keys, ch, ACTIVITIES),
    )
    decision = await orchestrator.decide("demo", "talk", 1, on_air_s=600)
    assert decision.decided_by == "bandit" and decision.activity in ACTIVITIES
    assert decision.fallback == "no ANTHROPIC_API_KEY"
    assert decision.action == ("keep" if decision.activity == "talk" else "switch")


async def test_a_young_segment_stays_on_air(redis: Redis, make_settings) -> None:
    keys = make_settings().keys
    orchestrator = Orchestrator(
        ACTIVITIES,
        min_segment_s=120,
        bandits=lambda ch: ThompsonBandit(redis, keys, ch, ACTIVITIES),
    )
    decision = await orchestrator.decide("demo", "talk", 1, on_air_s=45)
    assert (decision.action, decision.activity, decision.decided_by) == ("keep", "talk", "dwell")


async def test_without_metrics_reader_or_bandit_it_still_decides_on_a_basic_context() -> None:
    decision = await Orchestrator(ACTIVITIES).decide("demo", "", 1, on_air_s=0)
    assert (decision.action, decision.activity, decision.decided_by) == (
        "switch",
        "talk",
        "default",
    )
    kept = await Orchestrator(ACTIVITIES).decide("demo", "music", 2, on_air_s=500)
    assert (kept.action, kept.activity) == ("keep", "music")
