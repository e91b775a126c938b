"""Filling the doc test's Redis server as a running system would, with the project's own code.

Analytics' handler in the real consumer runner, the metrics computer, the decision loop
and leases write the keys the doc's commands read; :func:`seed` returns the values the
checks refer to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError

from services.analytics.handler import GROUP, MetricsHandler
from services.analytics.metrics import MetricsComputer, Windows
from services.analytics.settings import AnalyticsSettings
from services.ingest.settings import IngestSettings
from services.ingest.sources.audience import channel_rng, new_state, opening_events, step
from services.ingest.sources.scenario import default_scenario
from services.orchestrator.decider import Orchestrator
from services.orchestrator.lease import ChannelLeases
from services.orchestrator.loop import DecisionLoop
from services.orchestrator.settings import OrchestratorSettings
from shared.bandit import bandit_factory
from shared.clock import utc_now
from shared.consumer import ConsumerRunner, Delivery
from shared.dead_letters.entries import dead_id as qualified_id
from shared.events import ChatEvent, DonationEvent, EventBase, to_fields
from shared.keys import Keys, Stream
from shared.publisher import Publisher


class BuggyAnalytics:
    """Analytics' own handler, with a bug on a few events (so they are dead-lettered)."""

    def __init__(self, inner: MetricsHandler, failing: set[str]) -> None:
        self.inner = inner
        self.failing = failing

    async def handle(self, batch: Sequence[Delivery], tx: Pipeline) -> None:
        for delivery in batch:
            if delivery.event.id in self.failing:
                raise RuntimeError(f"analytics bug on {delivery.event.id}")
        await self.inner.handle(batch, tx)


async def settle(redis: Redis, keys: Keys, group: str, partition: int) -> bool:
    """Whether ``group`` has read and acked every entry of the partition's event streams.

    Compares ids rather than reading ``lag``, which Redis 6.2 does not report.
    """
    for stream in keys.partition_streams(partition):
        try:
            infos = await redis.xinfo_groups(stream)
            last = (await redis.xinfo_stream(stream))["last-generated-id"]
        except ResponseError:  # not created yet
            return False
        mine = [info for info in infos if info["name"] == group]
        if not mine or mine[0]["last-delivered-id"] != last or mine[0]["pending"] != 0:
            return False
    return True


async def seed(redis: Redis, url: str) -> dict[str, str]:
    """Fill the server as a running system would; returns values the checks refer to."""
    base = {"_env_file": None, "redis_url": url, "redis_key_prefix": "", "channels": ["demo"]}
    analytics = AnalyticsSettings(
        **base,  # type: ignore[arg-type]
        consumer_name="analytics-7c9f-12",
        consumer_block_ms=50,
        consumer_max_attempts=1,
    )
    keys = analytics.keys
    home = keys.partitions.of("demo")  # every stream below is demo's partition's
    publisher = Publisher(redis, analytics)

    # a quarter hour of a simulated stream, published as ingest publishes it
    stream_id, now, broken_entry = await publish_a_quarter_hour(redis, keys, base, publisher, home)

    # analytics consumes it all, in its group, through the real runner
    await consume_as_analytics(redis, analytics, home)
    demo = keys.partitions.of("demo")
    dead = {
        fields["stream"] + "/" + fields["entry_id"]: qualified_id(demo, dead_id)
        for dead_id, fields in await redis.xrange(keys.dead(demo))
    }
    chat_key, tip_key = keys.stream(Stream.CHAT, home), keys.stream(Stream.DONATION, home)
    tip_entry = next(e for e, f in await redis.xrange(tip_key) if f.get("id") == "sl-5f2c")
    chat_entry = next(e for e, f in await redis.xrange(chat_key) if f.get("id") == "m-82")

    # a second analytics replica read three chat messages and died two minutes ago
    pending = await leave_pending_on_a_dead_replica(redis, publisher, chat_key, now)

    # the bandit: segments scored, a decision recorded, leases held
    await score_lease_and_decide(redis, keys, base, publisher, stream_id)

    chats = await redis.xrevrange(chat_key, count=1)
    return {
        "stream_id": stream_id,
        "broken_entry": broken_entry,
        "broken_dead": dead[f"{chat_key}/{broken_entry}"],
        "broken_dead_entry": dead[f"{chat_key}/{broken_entry}"].partition("/")[2],
        "tip_dead": dead[f"{tip_key}/{tip_entry}"],
        "chat_dead": dead[f"{chat_key}/{chat_entry}"],
        "pending_first": pending[0],
        "last_chat": chats[0][0],
        "viewer_entries": str(await redis.xlen(keys.stream(Stream.VIEWERS, home))),
    }


async def consume_as_analytics(redis: Redis, analytics: AnalyticsSettings, home: int) -> None:
    """Analytics' handler in the real runner reads and acks ``home`` (failing on two
    entries, which it dead-letters), then the live figures are recomputed."""
    keys = analytics.keys
    handler = BuggyAnalytics(MetricsHandler(keys, analytics.state_ttl_s), {"sl-5f2c", "m-82"})
    runner = ConsumerRunner(redis, analytics, GROUP, handler, partition=home)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        async with asyncio.timeout(20):
            while not await settle(redis, keys, GROUP, home):
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
    await MetricsComputer(redis, keys, Windows(60_000, 300_000), ZoneInfo("UTC")).recompute("demo")


async def leave_pending_on_a_dead_replica(
    redis: Redis, publisher: Publisher, chat_key: str, now: datetime
) -> list[str]:
    """Three chat messages read by a second analytics replica that died two minutes ago;
    returns their entry ids, still pending on it."""
    late = [
        ChatEvent(id=f"late-{n}", channel="demo", ts=now, source="twitch", user="bo", text="o/")
        for n in range(3)
    ]
    await publisher.publish_many(late)
    read = await redis.xreadgroup(GROUP, "analytics-4b1d-7", {chat_key: ">"}, count=3)
    pending = [entry_id for entry_id, _ in read[0][1]]
    await redis.xclaim(chat_key, GROUP, "analytics-4b1d-7", 0, pending, idle=120_000)
    return pending


async def score_lease_and_decide(
    redis: Redis, keys: Keys, base: dict[str, Any], publisher: Publisher, stream_id: str
) -> None:
    """The bandit's arms scored, demo's lease held by one of two orchestrators, and a
    decision recorded by the decision loop from analytics' view of the stream."""
    orchestrator_settings = OrchestratorSettings(**base, min_segment_s=120)
    bandits = bandit_factory(redis, orchestrator_settings)
    rewards = {"talk": 0.55, "q_and_a": 0.5, "gameplay": 0.8, "react": 0.35, "music": 0.45}
    for n, (arm, reward) in enumerate(rewards.items()):
        for repeat in range(4):
            token = f"{stream_id}:{n}{repeat}:{arm}"
            await bandits("demo").update_once(arm, reward, token, ttl_s=30 * 86_400)
    leases = ChannelLeases(redis, keys, "orchestrator-1", ttl_ms=600_000)
    await leases.fair_share(1)
    await ChannelLeases(redis, keys, "orchestrator-2", ttl_ms=600_000).fair_share(1)
    assert await leases.hold("demo")
    decider = Orchestrator(orchestrator_settings.activities, bandits=bandits, min_segment_s=120)
    loop = DecisionLoop(redis, orchestrator_settings, decider, publisher, leases)
    assert await loop.tick("demo") is not None  # decided from analytics' view of the stream


async def publish_a_quarter_hour(
    redis: Redis, keys: Keys, base: dict[str, Any], publisher: Publisher, home: int
) -> tuple[str, datetime, str]:
    """A simulated quarter hour of demo published as ingest publishes it, two entries
    analytics will fail on, and one broken entry written past the publisher.

    Returns the stream id, the simulation's last instant and the broken entry's id.
    """
    ingest = IngestSettings(**base)  # type: ignore[arg-type]
    rng = channel_rng(7, "demo")
    state = new_state(default_scenario(), ingest, "demo", utc_now() - timedelta(minutes=15), rng)
    events: list[EventBase] = opening_events(state)
    while state.elapsed_s < 15 * 60:
        events += step(state, rng, 1.0)
    now = state.now
    failing_tip = DonationEvent(
        id="sl-5f2c", channel="demo", ts=now, source="streamlabs", user="ana", amount="10.00"
    )
    failing_chat = ChatEvent(
        id="m-82", channel="demo", ts=now, source="twitch", user="ana", text="gg"
    )
    await publisher.publish_many([*events, failing_tip, failing_chat])
    # a producer with a bug writes a timestamp without a zone, past the publisher
    broken = to_fields(
        ChatEvent(id="m-81", channel="demo", ts=now, source="twitch", user="ana", text="hi")
    )
    broken_entry = await redis.xadd(
        keys.stream(Stream.CHAT, home),
        broken | {"ts": "2026-02-27 10:30:00"},  # type: ignore[arg-type]
    )
    return state.stream_id, now, broken_entry
