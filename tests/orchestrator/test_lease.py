"""Per-channel leases on a real Redis: one holder, renewal, expiry failover, release, and the
loop holding its share."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from services.orchestrator.lease import ChannelLeases
from services.orchestrator.settings import OrchestratorSettings
from tests.orchestrator.test_loop import loop_for


def leases(redis: Redis, make_settings, replica: str, ttl_ms: int = 300) -> ChannelLeases:
    return ChannelLeases(redis, make_settings().keys, replica, ttl_ms)


async def test_one_replica_holds_a_channel_and_keeps_it_by_renewing(
    redis: Redis, make_settings
) -> None:
    a, b, c = (leases(redis, make_settings, name) for name in "abc")
    assert [await x.hold("demo") for x in (a, b, c)] == [True, False, False]
    for _ in range(5):  # renewing well within the TTL keeps it
        await asyncio.sleep(0.1)
        assert await a.hold("demo") and not await b.hold("demo")
    assert await a.holder("demo") == "a"


async def test_a_dead_holder_loses_the_channel_within_the_ttl(redis: Redis, make_settings) -> None:
    a, b = leases(redis, make_settings, "a"), leases(redis, make_settings, "b")
    assert await a.hold("demo")
    await asyncio.sleep(0.35)  # a stops renewing, as a killed process would
    assert await b.hold("demo") and not await a.hold("demo")


async def test_release_hands_over_at_once_and_never_releases_someone_elses(
    redis: Redis, make_settings
) -> None:
    a, b = leases(redis, make_settings, "a", 10_000), leases(redis, make_settings, "b", 10_000)
    assert await a.hold("demo")
    await b.release("demo")
    assert await a.holder("demo") == "a"
    await a.release("demo")
    assert await b.hold("demo")


async def test_channels_are_leased_independently(redis: Redis, make_settings) -> None:
    a, b = leases(redis, make_settings, "a", 10_000), leases(redis, make_settings, "b", 10_000)
    assert await a.hold("one") and await b.hold("two")
    assert not await a.hold("two") and not await b.hold("one")


async def test_hold_many_takes_free_leases_renews_its_own_and_leaves_others(
    redis: Redis, make_settings
) -> None:
    channels = [f"ch{n}" for n in range(30)]  # spread over many partitions (slots)
    a, b = leases(redis, make_settings, "a", 10_000), leases(redis, make_settings, "b", 10_000)
    assert await b.hold_many(channels[:10]) == set(channels[:10])
    assert await a.hold_many(channels) == set(channels[10:])
    await redis.pexpire(a.lease_key("ch20"), 50)
    assert await a.hold_many(channels) == set(channels[10:])
    assert await redis.pttl(a.lease_key("ch20")) > 5_000, "renewed to the whole TTL"
    assert {await a.holder(ch) for ch in channels[:10]} == {"b"}


async def test_release_many_gives_back_only_its_own(redis: Redis, make_settings) -> None:
    channels = [f"ch{n}" for n in range(30)]
    a, b = leases(redis, make_settings, "a", 10_000), leases(redis, make_settings, "b", 10_000)
    await b.hold_many(channels[:10])
    await a.hold_many(channels)
    await a.release_many(channels)
    assert [await a.holder(ch) for ch in channels] == ["b"] * 10 + [None] * 20


async def test_the_loop_holds_its_share_and_lets_go_of_a_channel_taken_from_it(
    redis: Redis, make_settings, tmp_path
) -> None:
    settings = make_settings(
        OrchestratorSettings,
        channels=[f"ch{n}" for n in range(12)],
        lease_ttl_ms=600,
        loop_interval_s=0.02,
        bandit_state_path=str(tmp_path / "bandit.json"),
        replica_id="loop",
    )
    loop = loop_for(redis, settings)
    stop = asyncio.Event()
    running = asyncio.create_task(loop.run(stop))
    try:
        await wait_until(lambda: loop.held == set(settings.channels))
        stolen = loop.leases.lease_key("ch3")
        await redis.set(stolen, "other", px=60_000)  # as if it had expired and been taken
        await wait_until(lambda: "ch3" not in loop.held)
        assert await redis.get(stolen) == "other"
    finally:
        stop.set()
        await running
    assert [await loop.leases.holder(ch) for ch in settings.channels].count(None) == 11


async def wait_until(condition, within_s: float = 5.0) -> None:
    for _ in range(int(within_s / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")
