"""``analytics-consume``: one analytics consumer over pre-published events, several batch sizes.

The consumer is what the analytics service runs: a
:class:`~shared.partitioned_consumer.PartitionedConsumer`, one
:class:`~shared.consumer.ConsumerRunner` per partition (``PARTITIONS``, 64), all in
one process; the events' channels fill a few partitions and the other runners idle
on their empty streams, as in the service.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from redis.asyncio import Redis

from services.analytics.handler import GROUP, MetricsHandler
from services.analytics.settings import AnalyticsSettings
from shared.events import (
    ActivityChangedEvent,
    BitsEvent,
    ChatEvent,
    DonationEvent,
    EventBase,
    FollowEvent,
    RaidEvent,
    StreamEndedEvent,
    StreamStartedEvent,
    SubEvent,
    ViewerCountEvent,
)
from shared.keys import EVENT_STREAMS
from shared.partitioned_consumer import PartitionedConsumer
from shared.publisher import Publisher
from shared.redis_client import connect
from shared.redis_server import RedisServer
from tools.benchmarks.harness import run_uvloop
from tools.benchmarks.measure import machine_cpu_s, redis_commands, redis_cpu_s

CONSUME_EVENTS = 100_000
CONSUME_CHANNELS = ("alpha", "bravo", "charlie", "delta")
CONSUME_BATCHES = (100, 500, 2000)
CONSUME_REPEATS = 3
CONSUME_AIM = 30_000
START = datetime(2026, 2, 27, 18, 0, tzinfo=UTC)


def event_mix(count: int, channels: Sequence[str], seed: int = 11) -> list[EventBase]:
    """``count`` events of a busy broadcast on each of ``channels``, interleaved.

    Per channel: a start and an activity change first, an end last; between them
    about 90 % chat (2,000 chatters), 4 % viewer counts, 3.5 % donations and bits,
    1.5 % subs, resubs and gifts, 1 % follows, raids and activity changes.
    """
    rng = random.Random(seed)
    per_channel = count // len(channels)
    events: list[list[EventBase]] = []
    for channel in channels:
        stream_id = f"{channel}-s1"
        at = START
        common = {"channel": channel, "source": "sim"}
        made: list[EventBase] = [
            StreamStartedEvent(id=f"{channel}-0", ts=at, stream_id=stream_id, **common),
            ActivityChangedEvent(
                id=f"{channel}-1", ts=at, stream_id=stream_id, activity="talk", **common
            ),
        ]
        for n in range(2, per_channel - 1):
            at += timedelta(milliseconds=rng.randint(5, 40))
            made.append(random_event(rng, f"{channel}-{n}", at, stream_id, common))
        made.append(StreamEndedEvent(id=f"{channel}-end", ts=at, stream_id=stream_id, **common))
        events.append(made)
    mixed = [event for group in zip(*events, strict=False) for event in group]
    return mixed[:count]


def random_event(
    rng: random.Random, event_id: str, at: datetime, stream_id: str, common: dict[str, str]
) -> EventBase:
    """One event of the mix described in :func:`event_mix`."""
    user = f"viewer{int(rng.paretovariate(1.2)) % 2000}"
    roll = rng.random()
    base: dict[str, Any] = {"id": event_id, "ts": at, **common}
    if roll < 0.90:
        words = rng.randint(1, 14)
        return ChatEvent(**base, user=user, text=" ".join(["pog"] * words) + " nice play")
    if roll < 0.94:
        return ViewerCountEvent(**base, count=rng.randint(800, 1200))
    if roll < 0.965:
        amount = Decimal(rng.choice(("1.00", "2.50", "5.00", "10.00", "20.00")))
        return DonationEvent(**base, user=user, amount=amount, message="keep it up")
    if roll < 0.975:
        return BitsEvent(**base, user=user, bits=rng.choice((100, 250, 500)), message="Cheer")
    if roll < 0.99:
        kind = rng.choice(("sub", "resub", "gift"))
        count = rng.randint(1, 5) if kind == "gift" else 1
        return SubEvent(
            **base, type=kind, user=user, tier="1000", count=count, amount=Decimal("4.99") * count
        )
    if roll < 0.996:
        return FollowEvent(**base, stream_id=stream_id, user=user)
    if roll < 0.998:
        return RaidEvent(**base, stream_id=stream_id, user=user, count=rng.randint(5, 300))
    return ActivityChangedEvent(
        **base, stream_id=stream_id, activity=rng.choice(("talk", "gameplay", "q_and_a"))
    )


def consume_settings(url: str, prefix: str, batch: int = 500) -> AnalyticsSettings:
    """Analytics settings on the benchmark's Redis under ``prefix``."""
    return AnalyticsSettings(
        _env_file=None,
        redis_url=url,
        redis_key_prefix=prefix,
        channels=list(CONSUME_CHANNELS),
        consumer_name="bench",
        consumer_batch_size=batch,
        consumer_block_ms=50,
        stream_maxlen_chat=CONSUME_EVENTS * 2,
        stream_maxlen_viewers=CONSUME_EVENTS * 2,
    )


def busy_partitions(settings: AnalyticsSettings) -> list[int]:
    """The partitions holding the benchmark's channels (the others stay empty)."""
    return sorted(settings.partitioning.channels_by_partition(settings.channels))


async def publish_template(url: str) -> dict[str, int]:
    """Publish the event mix once under ``tpl:``; return entries per stream kind."""
    settings = consume_settings(url, "tpl:")
    redis = connect(url)
    try:
        events = event_mix(CONSUME_EVENTS, CONSUME_CHANNELS)
        result = await Publisher(redis, settings, batch_size=1000).publish_many(events)
        assert result.published == CONSUME_EVENTS, result.published
        counts = dict.fromkeys((kind.value for kind in EVENT_STREAMS), 0)
        for partition in busy_partitions(settings):
            for kind in EVENT_STREAMS:
                counts[kind.value] += int(await redis.xlen(settings.keys.stream(kind, partition)))
        return counts
    finally:
        await redis.aclose()


@dataclass(frozen=True)
class ConsumeRun:
    """One timed consumer run."""

    rate: float
    client_cpu_s: float
    redis_cpu_s: float
    other_cpu_s: float
    commands: int
    elapsed_s: float


async def consume_once(url: str, batch: int, run: int) -> ConsumeRun:
    """Copy the template streams under a fresh prefix and time the service's consumer.

    Timed from ``consumer.run`` starting (one runner per partition, group creation
    included) until the runners' count of handled events, which each raises only
    after a batch's MULTI/EXEC of effects + XACKs returned, reaches the total.
    Checked afterwards: nothing pending, no lag, and the per-channel versions add up
    to the total.
    """
    prefix = f"run{run}-b{batch}:"
    settings = consume_settings(url, prefix, batch)
    template = consume_settings(url, "tpl:").keys
    redis = connect(url)
    try:
        for partition in busy_partitions(settings):
            for kind in EVENT_STREAMS:  # same partition, same tag: one slot on a cluster
                await redis.copy(
                    template.stream(kind, partition), settings.keys.stream(kind, partition)
                )
        runner = PartitionedConsumer(
            redis, settings, GROUP, MetricsHandler(settings.keys, settings.state_ttl_s)
        )
        stop = asyncio.Event()
        redis_before, cpu_before = await redis_cpu_s(redis), time.process_time()
        machine_before = machine_cpu_s()
        commands_before = await redis_commands(redis)
        started = time.perf_counter()
        task = asyncio.create_task(runner.run(stop))
        while runner.summary.handled < CONSUME_EVENTS and not task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.002)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_before
        machine = machine_cpu_s() - machine_before
        redis_cpu = await redis_cpu_s(redis) - redis_before
        commands = await redis_commands(redis) - commands_before
        stop.set()
        summary = await task
        assert summary.handled == CONSUME_EVENTS and not summary.dead_lettered, summary
        await check_all_acked(redis, settings)
        await delete_prefix(redis, prefix)
    finally:
        await redis.aclose()
    others = machine - cpu - redis_cpu
    return ConsumeRun(CONSUME_EVENTS / elapsed, cpu, redis_cpu, others, commands, elapsed)


async def check_all_acked(redis: Redis, settings: AnalyticsSettings) -> None:
    """Every entry acked and counted once in the per-channel versions."""
    keys = settings.keys
    for key in keys.event_streams():
        if not await redis.exists(key):
            continue
        pending: dict[str, Any] = await redis.xpending(key, GROUP)
        assert pending["pending"] == 0, (key, pending)
        for group in await redis.xinfo_groups(key):
            assert group["lag"] == 0, (key, group)
    versions = [await redis.get(keys.analytics(c).version) for c in settings.channels]
    assert sum(int(v or 0) for v in versions) == CONSUME_EVENTS, versions


async def delete_prefix(redis: Redis, prefix: str) -> None:
    """Delete every key under ``prefix``."""
    keys = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
    for start in range(0, len(keys), 500):
        await redis.delete(*keys[start : start + 500])


def bench_consume() -> str:
    """``analytics-consume``: one consumer over pre-published events, several batch sizes."""
    server = RedisServer()
    server.start()
    try:
        counts = run_uvloop(publish_template(server.url))
        best: dict[int, ConsumeRun] = {}
        for run in range(CONSUME_REPEATS):
            for batch in CONSUME_BATCHES:
                result = run_uvloop(consume_once(server.url, batch, run))
                if batch not in best or result.rate > best[batch].rate:
                    best[batch] = result
    finally:
        server.close()
    partitions = consume_settings(server.url, "tpl:").partitioning
    busy = len(partitions.channels_by_partition(list(CONSUME_CHANNELS)))
    top = max(run.rate for run in best.values())
    verdict = "met" if top >= CONSUME_AIM else "NOT met"
    mix = ", ".join(f"{kind} {count:,}" for kind, count in counts.items() if count)
    rows = [
        f"| {batch:,} | {run.rate:,.0f} | {run.elapsed_s:.2f} "
        f"| {run.client_cpu_s / run.elapsed_s:.0%} | {run.redis_cpu_s / run.elapsed_s:.0%} "
        f"| {run.other_cpu_s / run.elapsed_s:.0%} | {run.client_cpu_s / CONSUME_EVENTS * 1e6:.0f} "
        f"| {run.commands / CONSUME_EVENTS:.2f} |"
        for batch, run in best.items()
    ]
    return "\n".join(
        [
            "One analytics consumer as the service runs it (`PartitionedConsumer`: a "
            f"`ConsumerRunner` + `MetricsHandler` per partition, {partitions.count} partitions "
            f"in one process, effects and XACKs in one MULTI/EXEC per batch) over "
            f"{CONSUME_EVENTS:,} pre-published events on {len(CONSUME_CHANNELS)} channels "
            f"({mix}) in {busy} partitions (the other runners idle on empty streams), "
            "timed from start until every event is "
            f"handled and acked; uvloop; best of {CONSUME_REPEATS} per batch size (runs "
            "interleaved). CPU columns: share of one core over the run for the consumer "
            "process, redis-server, and everything else on the machine (other work sharing "
            "the 2 cores); consumer CPU time per event, which other work on the machine does not "
            "inflate (1,000,000 / it is the ceiling on one free core); Redis commands per event.",
            "",
            "| `CONSUMER_BATCH_SIZE` | events/s | seconds | consumer CPU | redis CPU "
            "| rest of machine | consumer CPU µs/event | commands/event |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
            *rows,
            "",
            f"Aim of {CONSUME_AIM:,} events/s: **{verdict}** (best {top:,.0f}).",
        ]
    )
