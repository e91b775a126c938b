"""The whole loop learns: simulator -> analytics state -> decisions -> rewards -> bandit.

A four-hour simulated stream in which one activity is clearly best is driven in
event time, deterministically: the simulator's audience steps second by second,
analytics' own handler writes its state, the decision loop ticks every 30 s of
event time, and every ``activity_changed`` it publishes switches the simulated
audience, as the running services do through Redis.
"""

from __future__ import annotations

import numpy as np
import pytest
from redis.asyncio import Redis

from services.ingest.settings import IngestSettings
from services.ingest.sources.audience import (
    channel_rng,
    new_state,
    opening_events,
    step,
    switch_activity,
)
from services.ingest.sources.scenario import Scenario, default_scenario
from services.orchestrator.app import build_loop
from services.orchestrator.claude import ClaudeAdvisor
from services.orchestrator.settings import OrchestratorSettings
from shared.bandit import ThompsonBandit
from tests.analytics.recorded import START
from tests.orchestrator.driver import apply, new_lifecycle

HOURS = 4
WINNER = "gameplay"


def one_clear_winner(winner: str) -> Scenario:
    """Every activity behaves like ``talk``, except ``winner``: far livelier chat and more tips."""
    scenario = default_scenario()
    plain = scenario.activities["talk"]
    lively = plain.model_copy(
        update={
            "chat_msgs_per_min_per_100_viewers": plain.chat_msgs_per_min_per_100_viewers * 3,
            "chatter_pool_users": plain.chatter_pool_users * 2,
            "donations_per_min_per_100_viewers": plain.donations_per_min_per_100_viewers * 5,
        }
    )
    activities = {name: (lively if name == winner else plain) for name in scenario.activities}
    return scenario.model_copy(update={"activities": activities})


@pytest.mark.slow
async def test_a_clearly_best_activity_ends_first_and_dominates_the_last_hour(
    redis: Redis, make_settings, tmp_path
) -> None:
    settings: OrchestratorSettings = make_settings(
        OrchestratorSettings,
        min_segment_s=180,
        decision_interval_s=30,
        reward_grace_s=5,
        bandit_state_path=str(tmp_path / "bandit.json"),
    )
    keys = settings.keys
    advisor = ClaudeAdvisor(
        api_key="", model="m", activities=settings.activities, timeout_s=1, max_retries=0
    )
    loop = build_loop(redis, settings, advisor, rng=np.random.default_rng(3))
    audience_rng = channel_rng(3, "demo")
    sim = new_state(
        one_clear_winner(WINNER), IngestSettings(_env_file=None), "demo", START, audience_rng
    )
    await apply(redis, keys, opening_events(sim))
    seen, chosen = "", []
    for tick in range(HOURS * 120):
        events = [e for _ in range(30) for e in step(sim, audience_rng, 1.0)]
        await apply(redis, keys, events)
        decision = await loop.tick("demo")
        if decision is not None and tick >= (HOURS - 1) * 120:
            chosen.append(decision.activity)
        seen, lifecycle = await new_lifecycle(redis, keys, seen)
        await apply(redis, keys, lifecycle)
        for change in lifecycle:
            switch_activity(sim, change.activity)  # type: ignore[union-attr]
    ranking = await ThompsonBandit(redis, keys, "demo", settings.activities).ranking()
    assert ranking[0] == WINNER, ranking
    assert chosen.count(WINNER) > len(chosen) / 2, chosen
