"""Per-channel leases on a real Redis: one holder, renewal, expiry failover, release."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from services.orchestrator.lease import ChannelLeases


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
