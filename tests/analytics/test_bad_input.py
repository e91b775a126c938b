"""Analytics survives entries that break the contract: each is dead-lettered with its reason."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from redis.asyncio import Redis

from services.analytics.settings import AnalyticsSettings
from shared.publisher import Publisher
from tests.analytics.analytics_server import analytics_server
from tests.analytics.streams import known_stream
from tests.chaos.reliability import record

COMMON = {"v": "1", "channel": "demo", "ts": "2026-02-27T10:00:05Z", "source": "sim"}
BAD_ENTRIES = [
    ("chat", {**COMMON, "type": "chat", "id": "no-user", "text": "hi"}, "user: Field required"),
    (
        "chat",
        {**COMMON, "type": "chat", "id": "huge", "user": "u", "text": "x" * 5000},
        "text: String should have at most 500 characters",
    ),
    (
        "donation",
        {**COMMON, "type": "donation", "id": "nan", "user": "u", "amount": "lots"},
        "amount: Input should be a valid decimal",
    ),
    (
        "viewers",
        {**COMMON, "type": "viewer_count", "id": "neg", "count": "-3"},
        "count: Input should be greater than or equal to 0",
    ),
    (
        "lifecycle",
        {**COMMON, "type": "party", "id": "p", "stream_id": "s"},
        "does not match any of the expected tags",
    ),
    (
        "sub",
        {**COMMON, "type": "chat", "id": "lost", "user": "u", "text": "wrong stream"},
        "'chat' does not belong on",
    ),
]


@pytest.fixture
def settings(make_settings) -> AnalyticsSettings:
    return make_settings(
        AnalyticsSettings, consumer_name="a1", consumer_block_ms=20, broadcast_interval_s=0.1
    )


async def test_bad_entries_are_dead_lettered_counted_and_the_good_ones_still_counted(
    redis: Redis, settings: AnalyticsSettings
) -> None:
    events = known_stream()
    async with analytics_server(settings) as (base, _):
        for stream, fields, _ in BAD_ENTRIES:
            await redis.xadd(settings.keys.channel_stream(stream, "demo"), fields)
        await Publisher(redis, settings).publish_many(events)
        async with asyncio.timeout(10):
            while await redis.hget(settings.keys.metrics("demo"), "version") != str(len(events)):
                await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=base) as http:
            prometheus = (await http.get("/metrics")).text
            health = await http.get("/healthz")
    dead = {
        (f["stream"], f["entry_id"]): f
        for _, f in await redis.xrange(settings.keys.channel_dead("demo"))
    }
    assert len(dead) == len(BAD_ENTRIES)
    reasons = [fields["reason"] for fields in dead.values()]
    for _, _, says in BAD_ENTRIES:
        assert any(says in reason for reason in reasons), says
    assert all(fields["group"] == "analytics" for fields in dead.values())
    assert 'streamloop_dead_letters_total{group="analytics"' in prometheus
    assert health.status_code == 200
    figures = await redis.hgetall(settings.keys.metrics("demo"))
    assert figures["revenue_today"] == "25.00" and figures["viewer_count"] == "60"


async def test_an_entry_for_a_channel_not_served_is_dead_lettered_and_creates_no_state(
    redis: Redis, settings: AnalyticsSettings
) -> None:
    events = known_stream()
    stranger = {**COMMON, "channel": "stranger"}
    foreign = [
        ("donation", {**stranger, "type": "donation", "id": "d1", "user": "u", "amount": "9.00"}),
        ("chat", {**stranger, "type": "chat", "id": "c1", "user": "u", "text": "hi"}),
    ]
    async with analytics_server(settings) as (base, _):
        for stream, fields in foreign:
            await redis.xadd(settings.keys.channel_stream(stream, "stranger"), fields)
        await Publisher(redis, settings).publish_many(events)
        async with asyncio.timeout(10):
            while await redis.hget(settings.keys.metrics("demo"), "version") != str(len(events)):
                await asyncio.sleep(0.05)
            while await redis.xlen(settings.keys.channel_dead("stranger")) < len(foreign):
                await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=base) as http:
            prometheus = (await http.get("/metrics")).text
    dead = [fields for _, fields in await redis.xrange(settings.keys.channel_dead("stranger"))]
    stranger_keys = [key async for key in redis.scan_iter(match="*stranger*")]
    record(
        "analytics-unknown-channel",
        "entries for a channel not in CHANNELS on the streams analytics consumes",
        len(foreign),
        "each dead-lettered with the reason in the transaction that acks it; no key created; "
        "the served channel's figures exact",
        lost=0,
        doubled=0,
        dead_lettered=len(dead),
        keys_created=len(stranger_keys),
    )
    assert sorted(json.loads(f["raw"])["id"] for f in dead) == ["c1", "d1"]
    assert all("'stranger' is not in CHANNELS" in f["reason"] for f in dead)
    assert stranger_keys == []
    assert "streamloop_analytics_unknown_channel_total" in prometheus
    pending = await redis.xpending(
        settings.keys.channel_stream("donation", "stranger"), "analytics"
    )
    assert pending["pending"] == 0
    figures = await redis.hgetall(settings.keys.metrics("demo"))
    assert figures["revenue_today"] == "25.00"
