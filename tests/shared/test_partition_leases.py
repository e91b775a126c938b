"""Partition leases on real Redis: fair shares, each partition held once, moves, claim at start."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from shared.consumer import ConsumerRunner
from shared.keys import Stream
from shared.leases import Leases
from shared.partition_leases import PartitionLeaseKeeper
from shared.partitioned_consumer import PartitionedConsumer
from shared.publisher import Publisher
from shared.settings import ConsumerSettings
from tests.shared.counting_handler import CountingHandler
from tests.shared.test_consumer import chats, counts

GROUP = "analytics"
PARTITIONS = 8


def keeper(redis: Redis, make_settings, replica: str, ttl_ms: int = 10_000) -> PartitionLeaseKeeper:
    keys = make_settings(partitions=PARTITIONS).keys
    return PartitionLeaseKeeper(redis, keys, GROUP, replica, ttl_ms)


async def holders(redis: Redis, make_settings) -> list[str | None]:
    keys = make_settings(partitions=PARTITIONS).keys
    return [await redis.get(keys.partition_lease(GROUP, p)) for p in range(PARTITIONS)]


async def settle(*keepers: PartitionLeaseKeeper, rounds: int = 3) -> None:
    for _ in range(rounds):
        for k in keepers:
            await k.round()


async def test_a_lone_replica_holds_every_partition(redis: Redis, make_settings) -> None:
    a = keeper(redis, make_settings, "a")
    await a.round()
    assert a.held() == list(range(PARTITIONS))
    assert await holders(redis, make_settings) == ["a"] * PARTITIONS


async def test_a_joining_replica_gets_half_and_every_partition_is_held_once(
    redis: Redis, make_settings
) -> None:
    a, b = keeper(redis, make_settings, "a"), keeper(redis, make_settings, "b")
    await a.round()
    await b.round()  # b counts two live replicas, but nothing is free yet
    assert b.held() == []
    await settle(a, b)  # a gives back its excess, b takes it
    assert len(a.held()) == len(b.held()) == PARTITIONS // 2
    assert sorted(a.held() + b.held()) == list(range(PARTITIONS))
    owners = await holders(redis, make_settings)
    assert all(owners[p] == "a" for p in a.held()) and all(owners[p] == "b" for p in b.held())


async def test_three_replicas_hold_at_most_their_ceiling_share_and_cover_everything(
    redis: Redis, make_settings
) -> None:
    replicas = [keeper(redis, make_settings, name) for name in ("a", "b", "c")]
    await settle(*replicas)
    shares = [len(r.held()) for r in replicas]
    assert max(shares) <= 3 and sum(shares) == PARTITIONS  # ceil(8 / 3) = 3
    assert sorted(p for r in replicas for p in r.held()) == list(range(PARTITIONS))


async def test_a_stopping_replica_gives_its_partitions_back_and_the_other_takes_them(
    redis: Redis, make_settings
) -> None:
    a, b = keeper(redis, make_settings, "a"), keeper(redis, make_settings, "b")
    await settle(a, b)
    await a.give_back_all()
    assert a.held() == []
    await b.round()
    assert b.held() == list(range(PARTITIONS))


async def test_a_dead_replicas_partitions_move_once_its_leases_expire(
    redis: Redis, make_settings
) -> None:
    a, b = keeper(redis, make_settings, "a", 400), keeper(redis, make_settings, "b", 400)
    await settle(a, b)
    theirs = a.held()
    await b.round()
    assert not set(theirs) & set(b.held())  # still a's while its leases live
    await asyncio.sleep(0.5)  # a stops renewing, as a SIGKILLed process would
    await b.round()
    assert b.held() == list(range(PARTITIONS))
    await a.round()  # back from a pause: it lost them all and takes no more than its share
    assert len(a.held()) <= PARTITIONS // 2 and not set(a.held()) & set(b.held())


async def test_the_run_loop_gives_every_lease_back_and_leaves_on_stop(
    redis: Redis, make_settings
) -> None:
    a = keeper(redis, make_settings, "a", 600)
    stop = asyncio.Event()
    task = asyncio.create_task(a.run(stop))
    async with asyncio.timeout(5):
        while len(a.held()) < PARTITIONS:
            await asyncio.sleep(0.02)
    stop.set()
    await task
    keys = make_settings(partitions=PARTITIONS).keys
    assert await holders(redis, make_settings) == [None] * PARTITIONS
    assert await redis.zcard(keys.replicas(GROUP)) == 0
    assert a.held_at_stop == list(range(PARTITIONS))


async def test_the_heartbeat_counts_only_replicas_seen_within_the_ttl(
    redis: Redis, make_settings
) -> None:
    keys = make_settings().keys

    def leases(replica: str) -> Leases[int]:
        return Leases(
            redis, lambda p: keys.partition_lease(GROUP, p), keys.replicas(GROUP), replica, 300
        )

    a, b = leases("a"), leases("b")
    assert await a.live_replicas() == 1
    assert await b.live_replicas() == 2
    assert await a.fair_share(64) == 32
    await asyncio.sleep(0.4)  # b stops heartbeating
    assert await a.live_replicas() == 1
    assert await a.fair_share(64) == 64


async def test_a_runner_on_a_newly_held_partition_claims_the_old_holders_pending_entries_at_once(
    redis: Redis, make_settings
) -> None:
    """Claim at start: no wait for ``claim_min_idle_ms`` (here an hour) after a lease moves."""
    settings: ConsumerSettings = make_settings(
        ConsumerSettings, consumer_claim_min_idle_ms=3_600_000, consumer_block_ms=20
    )
    partition = settings.partitioning.of("demo")
    stream = settings.keys.stream(Stream.CHAT, partition)
    counted = f"{settings.redis_key_prefix}counted"
    await Publisher(redis, settings).publish_many(chats(5))
    old = settings.model_copy(update={"consumer_name": "old"})
    await ConsumerRunner(
        redis, old, GROUP, CountingHandler(counted), [Stream.CHAT], partition=partition
    ).ensure_groups()
    await redis.xreadgroup(GROUP, "old", {stream: ">"}, count=10)  # then "old" dies
    new = PartitionedConsumer(
        redis,
        settings.model_copy(update={"consumer_name": "new"}),
        GROUP,
        CountingHandler(counted),
        [Stream.CHAT],
        partitions=lambda: [partition],
        claim_at_start=True,
    )
    assert await new.claim_now(partition) == 5
    assert (await redis.xpending(stream, GROUP))["pending"] == 0
    assert await counts(redis, counted) == {f"chat:c{n}": 1 for n in range(5)}
    assert new.summary.claimed == 5


async def test_without_claim_at_start_young_pending_entries_stay_with_their_owner(
    redis: Redis, make_settings
) -> None:
    """The default (every replica reads every partition): a live peer's batch is not taken."""
    settings: ConsumerSettings = make_settings(
        ConsumerSettings, consumer_claim_min_idle_ms=3_600_000, consumer_block_ms=20
    )
    partition = settings.partitioning.of("demo")
    stream = settings.keys.stream(Stream.CHAT, partition)
    counted = f"{settings.redis_key_prefix}counted"
    await Publisher(redis, settings).publish_many(chats(5))
    runner = ConsumerRunner(
        redis, settings, GROUP, CountingHandler(counted), [Stream.CHAT], partition=partition
    )
    await runner.ensure_groups()
    await redis.xreadgroup(GROUP, "peer", {stream: ">"}, count=10)
    assert await runner.reclaim() == 0
    assert (await redis.xpending(stream, GROUP))["pending"] == 5
