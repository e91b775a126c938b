"""Analytics killed with SIGKILL ten times during a 100,000-event replay ends with exact figures.

The recording is replayed by the real ``python -m services.ingest replay`` while
the real ``python -m services.analytics`` is started, killed at a random moment
and started again, ten times, alternating two consumer names (a restarted
container keeps its name and re-reads its own pending entries; a new one takes
the dead one's entries over). A last process finishes the work. Its
``metrics:{channel}`` hashes and every raw per-channel key (per-activity
accumulators included) must equal, field by field, those of one uninterrupted
consumer fed the same events under another key prefix.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from redis.asyncio import Redis

from services.analytics.handler import GROUP, MetricsHandler
from services.ingest.sources.recording import entry_line
from shared.events import EventBase, to_fields
from shared.partitioned_consumer import PartitionedConsumer
from shared.publisher import Publisher
from tests.analytics.recorded import recorded_stream
from tests.analytics.test_exactly_once import (
    CHANNELS,
    PARTITIONS,
    dump,
    run_until_acked,
    settings_for,
    wait_all_acked,
)
from tests.chaos.processes import Service, start, wait_healthy
from tests.chaos.reliability import record

EVENTS = 100_000
KILLS = 10
REPLAY_SPAN_S = 20.0
"""Real seconds the replay is spread over, so the kills land while events still arrive."""

pytestmark = pytest.mark.slow


def big_recording() -> list[EventBase]:
    """At least ``EVENTS`` events: three long simulated streams with a large audience."""
    events = [e for ch in CHANNELS for e in recorded_stream(540, seed=5, channel=ch, viewers=7000)]
    assert len(events) >= EVENTS
    return events


def write_recording(events: list[EventBase], path: Path) -> Path:
    with path.open("w", encoding="utf-8") as out:
        out.writelines(entry_line(e.stream.value, "", to_fields(e)) for e in events)
    return path


async def reference(redis_url: str, redis: Redis, events: list[EventBase]) -> dict[str, object]:
    """Figures and raw state of one uninterrupted in-process consumer (own prefix, removed)."""
    prefix = f"test:ref:{uuid.uuid4().hex[:8]}:"
    settings = settings_for(redis_url, prefix, "solo")
    try:
        await Publisher(redis, settings).publish_many(events)
        handler = MetricsHandler(settings.keys, settings.state_ttl_s)
        runner = PartitionedConsumer(redis, settings, GROUP, handler)
        await run_until_acked([runner], redis, settings, len(events))
        return await dump(redis, settings)
    finally:
        await redis.delete(*[k async for k in redis.scan_iter(match=f"{prefix}*")])


def analytics_env(redis_url: str, prefix: str, name: str) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": prefix,
        "CHANNELS": ",".join(CHANNELS),
        "CONSUMER_NAME": name,
        "PARTITIONS": str(PARTITIONS),
        "CONSUMER_CLAIM_MIN_IDLE_MS": "500",
        "CONSUMER_RECLAIM_INTERVAL_S": "0.2",
        "ANALYTICS_LEASE_TTL_MS": "1000",  # a killed one's partitions move within a second
    }


def replay(redis_url: str, prefix: str, path: Path, speed: float) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "services.ingest", "replay", str(path), "--speed", str(speed)]
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": prefix,
        "PARTITIONS": str(PARTITIONS),
    }
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def applied(redis: Redis, prefix: str) -> int:
    settings = settings_for("redis://unused", prefix, "probe")
    return sum([int(await redis.get(settings.keys.analytics(ch).version) or 0) for ch in CHANNELS])


async def service_metrics(redis: Redis, prefix: str) -> dict[str, dict[str, str]]:
    """``metrics:{channel}`` as the service itself wrote it."""
    keys = settings_for("redis://unused", prefix, "probe").keys
    return {ch: await redis.hgetall(keys.metrics(ch)) for ch in CHANNELS}


async def kill_repeatedly(
    redis_url: str, redis: Redis, prefix: str, logs: Path
) -> list[tuple[float, int]]:
    """Start, wait, SIGKILL ``KILLS`` times; (seconds lived, events applied) at each kill."""
    chaos = random.Random(2026)
    kills = []
    for round_ in range(KILLS):
        service = start("analytics", analytics_env(redis_url, prefix, f"an-{round_ % 2}"), logs)
        began = time.monotonic()
        await wait_healthy(service)
        await asyncio.sleep(chaos.uniform(0.1, 1.2))
        service.kill()
        kills.append((time.monotonic() - began, await applied(redis, prefix)))
    return kills


async def finish(redis_url: str, redis: Redis, prefix: str, logs: Path, total: int) -> Service:
    """A last process that works until every event is applied and acked, then stops cleanly."""
    survivor = start("analytics", analytics_env(redis_url, prefix, "an-0"), logs)
    await wait_healthy(survivor)
    await wait_all_acked(redis, settings_for(redis_url, prefix, "probe"), total)
    await until_metrics_current(redis, prefix)
    return survivor


async def until_metrics_current(redis: Redis, prefix: str) -> None:
    """Wait for the service's metrics loop to have written figures of the final state."""
    keys = settings_for("redis://unused", prefix, "probe").keys
    async with asyncio.timeout(30):
        for channel in CHANNELS:
            final = await redis.get(keys.analytics(channel).version)
            while (await redis.hget(keys.metrics(channel), "version")) != final:
                await asyncio.sleep(0.1)


async def test_ten_sigkills_during_a_100k_replay_end_with_the_uninterrupted_figures(
    redis_url: str, redis: Redis, key_prefix: str, tmp_path: Path
) -> None:
    events = big_recording()
    expected = await reference(redis_url, redis, events)
    path = write_recording(events, tmp_path / "recording.jsonl")
    span_s = (events[-1].ts - events[0].ts).total_seconds()
    began = time.monotonic()
    replaying = replay(redis_url, key_prefix, path, speed=span_s / REPLAY_SPAN_S)
    try:
        kills = await kill_repeatedly(redis_url, redis, key_prefix, tmp_path / "logs")
        survivor = await finish(redis_url, redis, key_prefix, tmp_path / "logs", len(events))
    finally:
        _, replay_errors = await asyncio.to_thread(replaying.communicate, timeout=120)
    assert replaying.returncode == 0, replay_errors.decode()
    assert survivor.stop() == 0, survivor.output()[-3000:]
    mid_work = [n for _, n in kills if 0 < n < len(events)]
    assert len(mid_work) >= KILLS - 2, f"kills must land while work remains: {kills}"
    assert await dump(redis, settings_for(redis_url, key_prefix, "probe")) == expected
    written = await service_metrics(redis, key_prefix)
    assert written == {ch: expected[f"{ch}/metrics"] for ch in CHANNELS}
    total_applied = await applied(redis, key_prefix)  # the version counters: one per application
    record(
        "crash-analytics",
        "analytics SIGKILL during a replay",
        KILLS,
        "metrics and per-activity accumulators equal the uninterrupted run, field by field",
        events=len(events),
        lost=max(0, len(events) - total_applied),
        doubled=max(0, total_applied - len(events)),
        applied_at_kills=[n for _, n in kills],
        wall_s=round(time.monotonic() - began, 1),
    )
