"""A stream counts once: redelivery, two replicas, the orchestrator online, crashes.

The stream is tests/analytics' ``extended_stream``: three of its segments are
scorable (talk 0-300 s, q_and_a 300-600 s, talk 780-900 s), so whatever happens the
bandit must end with exactly three updates and one report.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from services.analytics.settings import AnalyticsSettings
from services.retro.handler import GROUP, RetroHandler
from services.retro.settings import RetroSettings
from shared.bandit import ThompsonBandit
from shared.events import EventBase, StreamEndedEvent
from shared.publisher import Publisher
from shared.rewards import SegmentScorer
from tests.analytics.streams import START, STREAM
from tests.analytics.test_metrics import consume_all
from tests.orchestrator.driver import apply
from tests.readmodel.summary_streams import extended_stream
from tests.retro.helpers import end_of, hand, retro_settings, running, until

SCORABLE = 3


@pytest.fixture
def settings(make_settings: Any, tmp_path: Path) -> RetroSettings:
    return retro_settings(make_settings, tmp_path)


async def total_updates(redis: Redis, settings: RetroSettings) -> int:
    state = await ThompsonBandit(redis, settings.keys, "demo", settings.activities).state()
    return sum(arm.updates for arm in state.values())


async def published(redis: Redis, make_settings: Any, events: Sequence[EventBase]) -> None:
    """Publish ``events`` and let the real analytics consumer take them all."""
    analytics: AnalyticsSettings = make_settings(
        AnalyticsSettings, consumer_name="a1", consumer_block_ms=20
    )
    await Publisher(redis, analytics).publish_many(events)
    await consume_all(redis, analytics, len(events))


def second_end(events: Sequence[EventBase]) -> StreamEndedEvent:
    """Another ``stream_ended`` for the same stream, as a second source would send it."""
    end = end_of(events, STREAM)
    return end.model_copy(update={"id": "x-end-helix", "source": "twitch"})


async def test_a_redelivered_stream_ended_changes_nothing(
    redis: Redis, make_settings: Any, settings: RetroSettings, tmp_path: Path
) -> None:
    events = extended_stream()
    await published(redis, make_settings, events)
    lifecycle = settings.keys.channel_stream("lifecycle", "demo")
    entries = await redis.xlen(lifecycle)
    async with running(redis, settings) as (runner, _, out):
        await until(lambda: runner.summary.handled == entries)
    first = await redis.hgetall(settings.keys.retro("demo", STREAM))
    md_file = tmp_path / "retros" / "demo" / "s-known.md"
    written = md_file.stat().st_mtime_ns
    assert await total_updates(redis, settings) == SCORABLE
    # Redeliver everything: rewind the group, as a lost ack or a replay would.
    await redis.xgroup_setid(lifecycle, GROUP, "0")
    async with running(redis, settings) as (runner, _, again):
        await until(lambda: runner.summary.handled == entries)
    assert await total_updates(redis, settings) == SCORABLE
    assert await redis.hgetall(settings.keys.retro("demo", STREAM)) == first
    assert await redis.zcard(settings.keys.retro_index("demo")) == 1
    assert out.getvalue().count("# Stream retro") == 1 and again.getvalue() == ""
    assert md_file.read_text() == first["markdown"] and md_file.stat().st_mtime_ns >= written
    assert (await redis.xpending(lifecycle, GROUP))["pending"] == 0


async def test_two_replicas_and_two_ends_of_one_stream_count_it_once(
    redis: Redis, make_settings: Any, settings: RetroSettings
) -> None:
    events = extended_stream()
    await published(redis, make_settings, [*events, second_end(events)])
    lifecycle = settings.keys.channel_stream("lifecycle", "demo")
    entries = await redis.xlen(lifecycle)
    second = settings.model_copy(update={"consumer_name": "r2", "consumer_batch_size": 1})
    first = settings.model_copy(update={"consumer_batch_size": 1})
    async with (
        running(redis, first) as (one, _, out_one),
        running(redis, second) as (two, _, out_two),
    ):
        await until(lambda: one.summary.handled + two.summary.handled == entries)
    assert await total_updates(redis, settings) == SCORABLE
    assert await redis.zrange(settings.keys.retro_index("demo"), 0, -1) == [STREAM]
    printed = out_one.getvalue() + out_two.getvalue()
    assert printed.count("# Stream retro: demo / s-known") == 1
    assert (await redis.xpending(lifecycle, GROUP))["pending"] == 0


async def test_concurrent_handlers_racing_on_one_stream_score_it_once(
    redis: Redis, settings: RetroSettings
) -> None:
    """Two replicas handling the stream's two ``stream_ended`` at the same instant."""
    events = extended_stream()
    await apply(redis, settings.keys, [*events, second_end(events)])
    outs = [io.StringIO(), io.StringIO(), io.StringIO()]
    handlers = [
        RetroHandler(redis, settings.model_copy(update={"consumer_name": f"r{n}"}), out=out)
        for n, out in enumerate(outs)
    ]
    ends = [end_of(events, STREAM), second_end(events), end_of(events, STREAM)]
    await asyncio.gather(*(hand(redis, h, [e]) for h, e in zip(handlers, ends, strict=True)))
    assert await total_updates(redis, settings) == SCORABLE
    assert sum(h.scored for h in handlers) == SCORABLE
    assert sum(out.getvalue().count("# Stream retro") for out in outs) == 1
    assert await redis.hget(settings.keys.retro("demo", STREAM), "complete") == "1"


async def test_the_orchestrator_scores_online_and_retro_only_the_rest(
    redis: Redis, settings: RetroSettings, tmp_path: Path
) -> None:
    events = extended_stream()
    before_end = [e for e in events if e.ts < START + timedelta(seconds=900)]
    await apply(redis, settings.keys, before_end)
    # The orchestrator, online, with its 5 s grace: the clock is at 803 s (the last chat),
    # so talk (ended 300 s) and q_and_a (ended 600 s) are scored; the last talk is on air.
    online = SegmentScorer(
        redis,
        settings.keys,
        lambda channel: ThompsonBandit(redis, settings.keys, channel, settings.activities),
        min_segment_s=60,
        grace_s=5,
        state_path=str(tmp_path / "bandit.json"),
    )
    assert await online.score_ready("demo", STREAM) == 2
    await apply(redis, settings.keys, [e for e in events if e not in before_end])
    handler = RetroHandler(redis, settings, out=io.StringIO())
    await hand(redis, handler, [end_of(events, STREAM)])
    # ... retro adds the last one, and a late online pass finds nothing left.
    assert handler.scored == 1 and await online.score_ready("demo", STREAM) == 0
    assert await total_updates(redis, settings) == SCORABLE
    markdown = await redis.hget(settings.keys.retro("demo", STREAM), "markdown")
    assert "3 of 4 segments scored" in markdown


class FailsOnceAfterScoring(RetroHandler):
    """The real handler, raising once right after the bandit update (before the commit)."""

    failed = False

    async def score(self, channel: str, stream_id: str) -> int:
        applied = await super().score(channel, stream_id)
        if not self.failed:
            self.failed = True
            raise RuntimeError("crash between the bandit update and the ack")
        return applied


async def test_a_failure_between_the_update_and_the_ack_is_retried_without_double_counting(
    redis: Redis, make_settings: Any, settings: RetroSettings
) -> None:
    events = extended_stream()
    await published(redis, make_settings, events)
    lifecycle = settings.keys.channel_stream("lifecycle", "demo")
    entries = await redis.xlen(lifecycle)
    handler = FailsOnceAfterScoring(redis, settings)
    async with running(redis, settings, handler) as (runner, _, out):
        await until(lambda: runner.summary.handled == entries)
    assert handler.failed
    assert await total_updates(redis, settings) == SCORABLE
    assert out.getvalue().count("# Stream retro") == 1
    assert await redis.hget(settings.keys.retro("demo", STREAM), "complete") == "1"
    assert (
        await redis.hlen(
            settings.keys.consumer_failures(GROUP, settings.keys.partitions.of("demo"))
        )
        == 0
    )
    assert (await redis.xpending(lifecycle, GROUP))["pending"] == 0


def spawn(redis_url: str, prefix: str, tmp_path: Path, crash: bool) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "tests.retro.crash_retro", redis_url, prefix, str(tmp_path)]
    env = {**os.environ, "CRASH_AT": "scoring" if crash else ""}
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )


async def test_sigkill_between_the_update_and_the_ack_then_a_restart(
    redis: Redis, redis_url: str, key_prefix: str, make_settings: Any, tmp_path: Path
) -> None:
    """A real process killed (-9) right after the bandit update, then started again."""
    events = extended_stream()
    await published(redis, make_settings, events)
    settings = retro_settings(make_settings, tmp_path)
    process = spawn(redis_url, key_prefix, tmp_path, crash=True)
    stdout, _ = await asyncio.to_thread(process.communicate, timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert stdout == "", "killed before printing"
    assert await total_updates(redis, settings) == SCORABLE  # the update was applied...
    lifecycle = settings.keys.channel_stream("lifecycle", "demo")
    assert (await redis.xpending(lifecycle, GROUP))["pending"] > 0  # ... but not acked
    assert not await redis.exists(settings.keys.retro_index("demo"))

    restarted = spawn(redis_url, key_prefix, tmp_path, crash=False)
    try:
        await until(lambda: redis.exists(settings.keys.retro_index("demo")), within=30)
        await until(
            lambda: _no_pending(redis, lifecycle), within=30
        )  # the restarted consumer re-read its pending entries and acked them
    finally:
        restarted.send_signal(signal.SIGTERM)
        stdout, _ = await asyncio.to_thread(restarted.communicate, timeout=30)
    assert await total_updates(redis, settings) == SCORABLE
    assert stdout.count("# Stream retro: demo / s-known") == 1
    assert await redis.hget(settings.keys.retro("demo", STREAM), "complete") == "1"


async def _no_pending(redis: Redis, stream: str) -> bool:
    return (await redis.xpending(stream, GROUP))["pending"] == 0
