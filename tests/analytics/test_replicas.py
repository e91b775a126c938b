"""Two real analytics processes share the partitions through leases and count every event once.

Each replica (``python -m services.analytics``) holds about half the partitions
(``/healthz`` lists them), consumes and recomputes only those, and the figures
and raw state equal, key by key, those of one uninterrupted in-process consumer
fed the same events under another prefix. After a SIGKILL of one replica the
other takes every partition once the dead one's leases expire, claims its
pending entries at once (``CONSUMER_CLAIM_MIN_IDLE_MS`` is set to ten minutes
here, so only the claim at start can take them) and the figures end exact.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from redis.asyncio import Redis

from services.analytics.handler import GROUP, MetricsHandler
from services.analytics.metrics import MetricsComputer, Windows
from services.analytics.settings import AnalyticsSettings
from shared.events import EventBase
from shared.partitioned_consumer import PartitionedConsumer
from shared.partitions import Partitions
from shared.publisher import Publisher
from tests.analytics.recorded import recorded_stream
from tests.chaos.processes import Service, start, wait_healthy

PARTITIONS = 8
CHANNELS = [f"ch{n}" for n in range(12)]
"""Twelve channels that land in all 8 partitions, so each replica has channels to count."""
LEASE_TTL_MS = 1500

pytestmark = pytest.mark.slow


def settings_for(redis_url: str, prefix: str, name: str = "probe") -> AnalyticsSettings:
    return AnalyticsSettings(
        _env_file=None,
        redis_url=redis_url,
        redis_key_prefix=prefix,
        consumer_name=name,
        consumer_block_ms=20,
        channels=CHANNELS,
        partitions=PARTITIONS,
    )


def events() -> list[EventBase]:
    return [e for n, ch in enumerate(CHANNELS) for e in recorded_stream(40, seed=n + 1, channel=ch)]


async def dump(redis: Redis, settings: AnalyticsSettings) -> dict[str, object]:
    """Every raw per-channel key and the recomputed figures of every channel."""
    windows = Windows(settings.chat_window_s * 1000, settings.engagement_window_s * 1000)
    computer = MetricsComputer(redis, settings.keys, windows, ZoneInfo("UTC"))
    out: dict[str, object] = {}
    for channel in CHANNELS:
        out[f"{channel}/metrics"] = await computer.recompute(channel)
        for key in settings.keys.analytics(channel).all():
            kind = await redis.type(key)
            short = key.removeprefix(settings.redis_key_prefix)
            if kind == "hash":
                out[short] = await redis.hgetall(key)
            elif kind == "zset":
                out[short] = await redis.zrange(key, 0, -1, withscores=True)
            else:
                out[short] = await redis.get(key)
    return out


async def applied(redis: Redis, settings: AnalyticsSettings) -> int:
    return sum([int(await redis.get(settings.keys.analytics(c).version) or 0) for c in CHANNELS])


async def all_applied_and_current(redis: Redis, settings: AnalyticsSettings, total: int) -> None:
    """Every event applied, nothing pending, every channel's figures of its final state."""
    async with asyncio.timeout(60):
        while await applied(redis, settings) < total or await pending(redis, settings):
            await asyncio.sleep(0.1)
        for channel in CHANNELS:
            final = await redis.get(settings.keys.analytics(channel).version)
            while await redis.hget(settings.keys.metrics(channel), "version") != final:
                await asyncio.sleep(0.1)


async def pending(redis: Redis, settings: AnalyticsSettings) -> int:
    total = 0
    for stream in settings.keys.event_streams():
        if await redis.exists(stream):
            groups = await redis.xinfo_groups(stream)
            total += sum(int(g["pending"]) for g in groups if g["name"] == GROUP)
    return total


async def reference(redis_url: str, redis: Redis, recorded: list[EventBase]) -> dict[str, object]:
    """One uninterrupted in-process consumer of every partition, under its own prefix."""
    prefix = f"test:ref:{uuid.uuid4().hex[:8]}:"
    settings = settings_for(redis_url, prefix, "solo")
    try:
        await Publisher(redis, settings).publish_many(recorded)
        runner = PartitionedConsumer(
            redis, settings, GROUP, MetricsHandler(settings.keys, settings.state_ttl_s)
        )
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        async with asyncio.timeout(60):
            while await applied(redis, settings) < len(recorded) or await pending(redis, settings):
                await asyncio.sleep(0.1)
        stop.set()
        await task
        return await dump(redis, settings)
    finally:
        await redis.delete(*[k async for k in redis.scan_iter(match=f"{prefix}*")])


def replica(redis_url: str, prefix: str, name: str, logs: Path) -> Service:
    env = {
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": prefix,
        "CHANNELS": ",".join(CHANNELS),
        "PARTITIONS": str(PARTITIONS),
        "CONSUMER_NAME": name,
        "CONSUMER_BLOCK_MS": "50",
        "CONSUMER_CLAIM_MIN_IDLE_MS": "600000",
        "ANALYTICS_LEASE_TTL_MS": str(LEASE_TTL_MS),
        "BROADCAST_INTERVAL_S": "0.2",
    }
    return start("analytics", env, logs)


async def held(service: Service, http: httpx.AsyncClient) -> list[int]:
    """The partitions ``service`` says it holds (``/healthz``)."""
    body = (await http.get(f"{service.url}/healthz", timeout=2)).json()
    assert body["partitions_held"] == len(body["partitions"])
    return list(body["partitions"])


async def until_split(services: list[Service], http: httpx.AsyncClient, within_s: float) -> None:
    """Wait until the replicas hold every partition between them, once each, evenly."""
    share = -(-PARTITIONS // len(services))
    try:
        async with asyncio.timeout(within_s):
            while True:
                shares = [await held(s, http) for s in services]
                everything = sorted(p for s in shares for p in s)
                if everything == list(range(PARTITIONS)) and all(len(s) <= share for s in shares):
                    return
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"partitions not split within {within_s} s: {shares}") from None


async def consumed(service: Service, http: httpx.AsyncClient) -> float:
    """Entries this process handled and acked, from its ``/metrics``."""
    text = (await http.get(f"{service.url}/metrics", timeout=2)).text
    pattern = r'^streamloop_events_consumed_total\{group="analytics",[^}]*\} (\S+)$'
    return sum(float(v) for v in re.findall(pattern, text, re.M))


async def held_gauge(service: Service, http: httpx.AsyncClient) -> float:
    """``streamloop_partitions_held{group="analytics"}`` from its ``/metrics``."""
    text = (await http.get(f"{service.url}/metrics", timeout=2)).text
    found = re.search(r'^streamloop_partitions_held\{group="analytics"\} (\S+)$', text, re.M)
    assert found, "no partitions-held gauge"
    return float(found[1])


def test_the_channels_cover_every_partition() -> None:
    assert {Partitions(PARTITIONS).of(c) for c in CHANNELS} == set(range(PARTITIONS))


async def test_two_replicas_split_the_partitions_and_count_every_event_exactly_once(
    redis_url: str, redis: Redis, key_prefix: str, tmp_path: Path
) -> None:
    recorded = events()
    expected = await reference(redis_url, redis, recorded)
    settings = settings_for(redis_url, key_prefix)
    a = replica(redis_url, key_prefix, "an-a", tmp_path)
    b = replica(redis_url, key_prefix, "an-b", tmp_path)
    try:
        await wait_healthy(a)
        await wait_healthy(b)
        async with httpx.AsyncClient(trust_env=False) as http:
            await until_split([a, b], http, within_s=20)
            assert sorted([len(await held(a, http)), len(await held(b, http))]) == [4, 4]
            assert [await held_gauge(s, http) for s in (a, b)] == [4.0, 4.0]
            await Publisher(redis, settings).publish_many(recorded)
            await all_applied_and_current(redis, settings, len(recorded))
            counts = [await consumed(a, http), await consumed(b, http)]
        assert all(n > 0 for n in counts) and sum(counts) == len(recorded), counts
        assert await applied(redis, settings) == len(recorded)  # one application per event
        assert await dump(redis, settings) == expected
        written = {c: await redis.hgetall(settings.keys.metrics(c)) for c in CHANNELS}
        assert written == {c: expected[f"{c}/metrics"] for c in CHANNELS}
    finally:
        assert a.stop() == 0, a.output()[-3000:]
        assert b.stop() == 0, b.output()[-3000:]


async def test_after_a_sigkill_the_survivor_takes_every_partition_and_the_figures_end_exact(
    redis_url: str, redis: Redis, key_prefix: str, tmp_path: Path
) -> None:
    recorded = events()
    half = len(recorded) // 2
    expected = await reference(redis_url, redis, recorded)
    settings = settings_for(redis_url, key_prefix)
    publisher = Publisher(redis, settings)
    a = replica(redis_url, key_prefix, "an-a", tmp_path)
    b = replica(redis_url, key_prefix, "an-b", tmp_path)
    try:
        await wait_healthy(a)
        await wait_healthy(b)
        async with httpx.AsyncClient(trust_env=False) as http:
            await until_split([a, b], http, within_s=20)
            await publisher.publish_many(recorded[:half])
            async with asyncio.timeout(30):
                while await consumed(a, http) == 0:
                    await asyncio.sleep(0.01)
            a.kill()  # while it works: its leases stay until they expire
            await publisher.publish_many(recorded[half:])
            # due within the TTL plus one renewal round (a third of it); room for a busy machine
            await until_split([b], http, within_s=3 * LEASE_TTL_MS / 1000 + 2)
            await all_applied_and_current(redis, settings, len(recorded))
        assert await applied(redis, settings) == len(recorded)
        assert await dump(redis, settings) == expected
        written = {c: await redis.hgetall(settings.keys.metrics(c)) for c in CHANNELS}
        assert written == {c: expected[f"{c}/metrics"] for c in CHANNELS}
    finally:
        a.stop()
        assert b.stop() == 0, b.output()[-3000:]
