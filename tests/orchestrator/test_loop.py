"""The decision loop on a real Redis: one decision per interval of event time, records, switches."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import numpy as np
import pytest
from redis.asyncio import Redis

from services.orchestrator.app import build_loop
from services.orchestrator.claude import ClaudeAdvisor
from services.orchestrator.loop import DecisionLoop
from services.orchestrator.settings import OrchestratorSettings
from shared.bandit import ThompsonBandit
from shared.clock import epoch_ms
from shared.events import ViewerCountEvent
from tests.analytics.streams import START, known_stream
from tests.orchestrator.driver import apply, new_lifecycle


@pytest.fixture
def settings(make_settings, tmp_path) -> OrchestratorSettings:
    return make_settings(
        OrchestratorSettings,
        min_segment_s=60,
        decision_interval_s=30,
        bandit_state_path=str(tmp_path / "bandit.json"),
        replica_id="r1",
    )


def loop_for(redis: Redis, settings: OrchestratorSettings) -> DecisionLoop:
    advisor = ClaudeAdvisor(
        api_key="", model="m", activities=settings.activities, timeout_s=1, max_retries=0
    )
    return build_loop(redis, settings, advisor, rng=np.random.default_rng(7))  # draws repeat


async def advance(redis: Redis, settings: OrchestratorSettings, seconds: float, n: int) -> None:
    """Move the channel's event-time clock to START + ``seconds`` with a viewer count."""
    event = ViewerCountEvent(
        id=f"tick{n}", channel="demo", source="sim", count=60, ts=START + timedelta(seconds=seconds)
    )
    await apply(redis, settings.keys, [event])


async def test_one_decision_per_interval_of_event_time(redis: Redis, settings) -> None:
    await apply(redis, settings.keys, known_stream())  # live, clock at START + 600 s
    loop = loop_for(redis, settings)
    first = await loop.tick("demo")
    assert first is not None and first.at_ms == epoch_ms(START + timedelta(seconds=600))
    assert await loop.tick("demo") is None, "same interval: no second decision"
    await advance(redis, settings, 620, 1)
    assert await loop.tick("demo") is None, "20 s later is still the same interval"
    await advance(redis, settings, 631, 2)
    assert await loop.tick("demo") is not None
    recorded = await redis.xrange(settings.keys.decisions("demo"))
    assert len(recorded) == 2
    assert {
        "action",
        "activity",
        "previous",
        "suggestion",
        "decided_by",
        "reason",
        "fallback",
    } <= set(recorded[0][1])
    assert recorded[0][1]["decided_by"] == "bandit"
    assert recorded[0][1]["fallback"] == "no ANTHROPIC_API_KEY"


async def test_a_switch_publishes_activity_changed_and_the_next_decision_sees_it(
    redis: Redis, settings
) -> None:
    await apply(redis, settings.keys, known_stream())
    for _ in range(300):  # make the bandit all but certain: music
        await ThompsonBandit(redis, settings.keys, "demo", settings.activities).update("music", 1)
    loop = loop_for(redis, settings)
    decision = await loop.tick("demo")
    assert decision is not None and (decision.action, decision.activity) == ("switch", "music")
    _, lifecycle = await new_lifecycle(redis, settings.keys, "")
    [change] = [e for e in lifecycle if e.type == "activity_changed"]
    assert (change.activity, change.previous, change.decided_by, change.source) == (
        "music",
        "q_and_a",
        "bandit",
        "orchestrator",
    )
    assert change.stream_id == "s-known"
    await advance(redis, settings, 640, 1)
    second = await loop.tick("demo")
    assert second is not None and (second.action, second.decided_by) == ("keep", "dwell")
    assert second.previous == "music", "the loop knows its own switch before analytics does"


async def test_an_offline_channel_gets_no_decision(redis: Redis, settings) -> None:
    events = [e for e in known_stream() if e.type != "stream_started"]
    await apply(redis, settings.keys, events)
    assert await loop_for(redis, settings).tick("demo") is None


async def test_replicas_racing_for_one_slot_decide_once(redis: Redis, settings) -> None:
    await apply(redis, settings.keys, known_stream())
    loops = [loop_for(redis, settings) for _ in range(3)]
    results = await asyncio.gather(*(loop.tick("demo") for loop in loops))
    assert sum(result is not None for result in results) == 1
    assert await redis.xlen(settings.keys.decisions("demo")) == 1


async def test_a_stream_live_with_no_activity_announced_gets_an_opening_decision(
    redis: Redis, settings
) -> None:
    """Twitch's stream.online names no activity: the first interval decides and announces one."""
    events = [e for e in known_stream() if e.type != "activity_changed"]
    await apply(redis, settings.keys, events)
    loop = loop_for(redis, settings)
    opening = await loop.tick("demo")
    assert opening is not None
    assert (opening.action, opening.previous, opening.decided_by) == ("switch", "", "bandit")
    assert opening.activity in settings.activities
    _, lifecycle = await new_lifecycle(redis, settings.keys, "")
    [change] = [e for e in lifecycle if e.type == "activity_changed"]
    assert (change.activity, change.previous, change.stream_id) == (
        opening.activity,
        "",
        "s-known",
    )
    await advance(redis, settings, 631, 1)
    second = await loop.tick("demo")
    assert second is not None and second.previous == opening.activity
    assert (second.action, second.decided_by) == ("keep", "dwell"), "the opening segment dwells"


@pytest.mark.parametrize("commit", [True, False])
async def test_a_choice_holds_one_segment_before_the_next_draw_when_committing(
    redis: Redis, make_settings, tmp_path, commit: bool
) -> None:
    """q_and_a has been on air 300 s and the bandit keeps it at 600 s; with COMMIT_SEGMENTS
    that keep holds 60 s (a dwell at 631 s, a fresh draw at 661 s); without, every interval
    after the first 60 s on air draws again."""
    settings = make_settings(
        OrchestratorSettings,
        min_segment_s=60,
        decision_interval_s=30,
        commit_segments=commit,
        bandit_state_path=str(tmp_path / "bandit.json"),
        replica_id="r1",
    )
    await apply(redis, settings.keys, known_stream())  # q_and_a on air since 300 s, clock 600 s
    bandit = ThompsonBandit(redis, settings.keys, "demo", settings.activities)
    for arm in settings.activities:
        for _ in range(40):
            await bandit.update(arm, 1.0 if arm == "q_and_a" else 0.0)
    loop = loop_for(redis, settings)
    by = []
    for n, seconds in enumerate([600, 631, 661]):
        await advance(redis, settings, seconds, n)
        decision = await loop.tick("demo")
        assert decision is not None and decision.activity == "q_and_a"
        by.append(decision.decided_by)
    assert by == (["bandit", "dwell", "bandit"] if commit else ["bandit", "bandit", "bandit"])
