"""Analytics counts every event exactly once: two replicas, and kill -9 at random instants.

Each run is compared, key by key and field by field, with an uninterrupted single
consumer fed the same recorded stream under another key prefix.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import uuid
from zoneinfo import ZoneInfo

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from services.analytics.handler import GROUP, MetricsHandler
from services.analytics.metrics import MetricsComputer, Windows
from services.analytics.settings import AnalyticsSettings
from shared.events import EventBase
from shared.partitioned_consumer import PartitionedConsumer
from shared.publisher import Publisher
from shared.redis_client import connect
from tests.analytics.recorded import recorded_stream

CHANNELS = ["demo", "second", "third"]
PARTITIONS = 8
"""Few partitions (the channels land in 0, 1 and 4), so runners poll little at 20 ms blocks."""


def recording() -> list[EventBase]:
    return [e for ch in CHANNELS for e in recorded_stream(120, seed=len(ch), channel=ch)]


def settings_for(redis_url: str, prefix: str, name: str) -> AnalyticsSettings:
    return AnalyticsSettings(
        _env_file=None,
        redis_url=redis_url,
        redis_key_prefix=prefix,
        consumer_name=name,
        consumer_batch_size=100,
        consumer_block_ms=20,
        channels=CHANNELS,
        consumer_claim_min_idle_ms=300,
        consumer_reclaim_interval_s=0.1,
        partitions=PARTITIONS,
    )


async def run_until_acked(
    runners: list[PartitionedConsumer], redis: Redis, settings, total: int
) -> None:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(runner.run(stop)) for runner in runners]
    try:
        await wait_all_acked(redis, settings, total)
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def wait_all_acked(redis: Redis, settings: AnalyticsSettings, total: int) -> None:
    async with asyncio.timeout(90):
        while True:
            versions = [
                int(await redis.get(settings.keys.analytics(ch).version) or 0) for ch in CHANNELS
            ]
            if sum(versions) >= total and not await any_pending(redis, settings):
                return
            await asyncio.sleep(0.1)


async def any_pending(redis: Redis, settings: AnalyticsSettings) -> bool:
    for stream in settings.keys.event_streams():
        try:
            if (await redis.xpending(stream, GROUP))["pending"]:
                return True
        except ResponseError:  # the group does not exist yet
            return True
    return False


async def dump(redis: Redis, settings: AnalyticsSettings) -> dict[str, object]:
    """Every raw key's content and the recomputed figures of every channel."""
    windows = Windows(settings.chat_window_s * 1000, settings.engagement_window_s * 1000)
    computer = MetricsComputer(redis, settings.keys, windows, ZoneInfo("UTC"))
    out: dict[str, object] = {}
    for channel in CHANNELS:
        out[f"{channel}/metrics"] = await computer.recompute(channel)
        for key in settings.keys.analytics(channel).all():
            short = key.removeprefix(settings.redis_key_prefix)
            kind = await redis.type(key)
            out[short] = (
                await redis.hgetall(key)
                if kind == "hash"
                else await redis.zrange(key, 0, -1, withscores=True)
                if kind == "zset"
                else await redis.get(key)
            )
    return out


async def reference(redis_url: str, redis: Redis, events: list[EventBase]) -> dict[str, object]:
    prefix = f"test:ref:{uuid.uuid4().hex[:8]}:"
    settings = settings_for(redis_url, prefix, "solo")
    try:
        await Publisher(redis, settings).publish_many(events)
        runner = PartitionedConsumer(redis, settings, GROUP, MetricsHandler(settings.keys, 3600))
        await run_until_acked([runner], redis, settings, len(events))
        return await dump(redis, settings)
    finally:
        keys = [k async for k in redis.scan_iter(match=f"{prefix}*")]
        await redis.delete(*keys)


async def test_two_replicas_count_every_event_exactly_once(
    redis_url: str, redis: Redis, key_prefix: str
) -> None:
    events = recording()
    expected = await reference(redis_url, redis, events)
    settings_a = settings_for(redis_url, key_prefix, "replica-a")
    settings_b = settings_for(redis_url, key_prefix, "replica-b")
    second = connect(redis_url)
    try:
        publishing = asyncio.create_task(Publisher(redis, settings_a).publish_many(events))
        runners = [
            PartitionedConsumer(client, s, GROUP, MetricsHandler(s.keys, 3600))
            for client, s in ((redis, settings_a), (second, settings_b))
        ]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(runner.run(stop)) for runner in runners]
        await publishing
        await wait_all_acked(redis, settings_a, len(events))
        stop.set()
        await asyncio.gather(*tasks)
    finally:
        await second.aclose()
    assert all(runner.summary.handled > 0 for runner in runners), "both replicas took work"
    assert sum(r.summary.handled for r in runners) == len(events)
    assert await dump(redis, settings_a) == expected


async def test_kill_9_at_random_instants_ends_with_the_uninterrupted_figures(
    redis_url: str, redis: Redis, key_prefix: str
) -> None:
    events = recording()
    expected = await reference(redis_url, redis, events)
    settings = settings_for(redis_url, key_prefix, "unused")
    await Publisher(redis, settings).publish_many(events)
    chaos = random.Random(11)
    applied_at_kills = []
    for round_ in range(6):
        process = spawn(redis_url, key_prefix, f"crashy-{round_ % 2}")
        await asyncio.sleep(chaos.uniform(0.4, 1.2))
        process.send_signal(signal.SIGKILL)
        process.wait()
        applied_at_kills.append(await applied(redis, settings))
    mid_work = [n for n in applied_at_kills if 0 < n < len(events)]
    assert len(mid_work) >= 3, f"the kills must land while work remains: {applied_at_kills}"
    survivor = spawn(redis_url, key_prefix, "survivor")
    try:
        await wait_all_acked(redis, settings, len(events))
    finally:
        survivor.terminate()
        survivor.wait()
    assert await dump(redis, settings) == expected


async def applied(redis: Redis, settings: AnalyticsSettings) -> int:
    """Events applied so far, all channels (the version counters count every application)."""
    return sum([int(await redis.get(settings.keys.analytics(ch).version) or 0) for ch in CHANNELS])


def spawn(url: str, prefix: str, name: str) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "tests.analytics.crash_analytics", url, prefix, name]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
