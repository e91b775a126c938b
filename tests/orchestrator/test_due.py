"""The due check on a real Redis: a look ticks a channel only when a tick has something to do."""

from __future__ import annotations

from datetime import timedelta

import pytest
from redis.asyncio import Redis

from services.orchestrator.due import Seen
from services.orchestrator.settings import OrchestratorSettings
from shared.clock import epoch_ms
from shared.events import ActivityChangedEvent, StreamEndedEvent
from tests.analytics.streams import START, STREAM, known_stream
from tests.orchestrator.driver import apply
from tests.orchestrator.test_loop import advance, loop_for


@pytest.fixture
def settings(make_settings, tmp_path) -> OrchestratorSettings:
    return make_settings(
        OrchestratorSettings,
        min_segment_s=60,
        decision_interval_s=30,
        bandit_state_path=str(tmp_path / "bandit.json"),
        replica_id="r1",
    )


async def ticked(redis: Redis, settings: OrchestratorSettings, channel: str = "demo"):
    """A loop that has looked at ``channel`` once and ticked it (so it knows it)."""
    loop = loop_for(redis, settings)
    assert await loop.due.due([channel]) == [channel], "a channel never ticked is due"
    await loop.tick(channel)
    return loop


async def test_a_live_channel_is_due_again_only_when_its_interval_has_passed(
    redis: Redis, settings
) -> None:
    await apply(redis, settings.keys, known_stream())  # live, clock at 600 s
    loop = await ticked(redis, settings)
    assert await loop.due.due(["demo"]) == []
    await advance(redis, settings, 629, 1)
    assert await loop.due.due(["demo"]) == [], "the clock moved, the slot is not due"
    await advance(redis, settings, 630, 2)
    assert await loop.due.due(["demo"]) == ["demo"]
    assert await loop.tick("demo") is not None, "and the tick it gets decides"


async def test_a_lifecycle_change_makes_a_channel_due_at_once(redis: Redis, settings) -> None:
    await apply(redis, settings.keys, known_stream())
    loop = await ticked(redis, settings)
    ended = StreamEndedEvent(
        id="end", channel="demo", source="sim", ts=START + timedelta(seconds=601), stream_id=STREAM
    )
    await apply(redis, settings.keys, [ended])
    assert await loop.due.due(["demo"]) == ["demo"]
    await loop.tick("demo")
    await advance(redis, settings, 700, 1)
    assert await loop.due.due(["demo"]) == ["demo"], "its last segment's grace has passed"
    await loop.tick("demo")
    assert loop.scorer is not None and not loop.scorer.waiting("demo")
    await advance(redis, settings, 900, 2)
    assert await loop.due.due(["demo"]) == [], "an ended, scored stream waits for nothing"


async def test_an_offline_channel_is_not_due_until_it_goes_live(redis: Redis, settings) -> None:
    offline = [e for e in known_stream() if e.type != "stream_started"]
    await apply(redis, settings.keys, [e for e in offline if e.type != "activity_changed"])
    loop = await ticked(redis, settings)
    await advance(redis, settings, 900, 1)
    assert await loop.due.due(["demo"]) == []
    change = ActivityChangedEvent(
        id="late", channel="demo", source="sim", ts=START + timedelta(seconds=901),
        stream_id=STREAM, activity="talk",
    )  # fmt: skip
    await apply(redis, settings.keys, [change])
    assert await loop.due.due(["demo"]) == ["demo"]


async def test_a_waiting_segment_makes_its_channel_due_when_the_clock_reaches_it(
    redis: Redis, settings
) -> None:
    offline = [e for e in known_stream() if e.type != "stream_started"]
    await apply(redis, settings.keys, offline)  # clock at 600 s, not live
    loop = await ticked(redis, settings)
    ready_ms = epoch_ms(START + timedelta(seconds=650))
    loop.due.after_tick("demo", Seen(ready_ms=ready_ms))
    await advance(redis, settings, 649, 1)
    assert await loop.due.due(["demo"]) == []
    await advance(redis, settings, 650, 2)
    assert await loop.due.due(["demo"]) == ["demo"]


async def test_a_forgotten_channel_is_due_and_others_are_untouched(redis: Redis, settings) -> None:
    channels = [f"ch{n}" for n in range(40)]  # spread over many partitions
    for channel in channels:
        await apply(redis, settings.keys, known_stream(channel))
    loop = loop_for(redis, settings)
    assert sorted(await loop.due.due(channels)) == sorted(channels)
    for channel in channels:
        await loop.tick(channel)
    assert await loop.due.due(channels) == []
    loop.due.forget("ch7")
    loop.due.forget("ch31")
    assert sorted(await loop.due.due(channels)) == ["ch31", "ch7"]
