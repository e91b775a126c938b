"""The publisher: validation, atomic dedupe across processes, batching, stream caps."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pydantic
import pytest
from redis.asyncio import Redis

from shared.events import ChatEvent, DonationEvent, parse_fields
from shared.publisher import Publisher
from shared.redis_client import connect

TS = datetime(2026, 2, 27, 10, 30, tzinfo=UTC)


def chat(n: int, source: str = "sim") -> ChatEvent:
    return ChatEvent(id=f"c{n}", channel="demo", ts=TS, source=source, user=f"u{n}", text="hi")


async def test_published_event_reads_back_identical(redis: Redis, make_settings) -> None:
    settings = make_settings()
    event = DonationEvent(
        id="d1",
        channel="demo",
        ts=TS,
        source="streamlabs",
        user="bob",
        amount="10",
        currency="EUR",
        message="gg",
    )
    assert await Publisher(redis, settings).publish(event)
    entries = await redis.xrange(settings.keys.channel_stream("donation", "demo"))
    assert len(entries) == 1
    fields = entries[0][1]
    assert fields["amount"] == "10.00" and fields["ts"] == "2026-02-27T10:30:00Z"
    assert parse_fields(fields) == event


async def test_same_source_and_id_lands_once(redis: Redis, make_settings) -> None:
    publisher = Publisher(redis, make_settings())
    first = await publisher.publish_many([chat(1), chat(2)])
    second = await publisher.publish_many([chat(2), chat(3), chat(3)])
    assert first.published == 2
    assert second.published == 1 and len(second.duplicates) == 2
    assert await redis.xlen(make_settings().keys.channel_stream("chat", "demo")) == 3


async def test_same_id_from_another_source_is_not_a_duplicate(redis: Redis, make_settings) -> None:
    publisher = Publisher(redis, make_settings())
    result = await publisher.publish_many([chat(1, "sim"), chat(1, "twitch")])
    assert result.published == 2


async def test_concurrent_publishers_on_separate_connections_land_each_event_once(
    redis_url: str, redis: Redis, make_settings
) -> None:
    settings = make_settings()
    events = [chat(n) for n in range(2000)]
    clients = [connect(redis_url) for _ in range(4)]
    try:
        publishers = [Publisher(client, settings, batch_size=100) for client in clients]
        results = await asyncio.gather(*(p.publish_many(events) for p in publishers))
    finally:
        for client in clients:
            await client.aclose()
    assert sum(r.published for r in results) == 2000
    assert await redis.xlen(settings.keys.channel_stream("chat", "demo")) == 2000


async def test_invalid_mapping_publishes_nothing_from_its_batch(
    redis: Redis, make_settings
) -> None:
    settings = make_settings()
    good = {
        "type": "chat",
        "id": "ok",
        "channel": "demo",
        "ts": "2026-02-27T10:30:00Z",
        "source": "sim",
        "user": "a",
        "text": "hello",
    }
    bad = {**good, "id": "bad", "ts": "yesterday"}
    with pytest.raises(pydantic.ValidationError, match="ts"):
        await Publisher(redis, settings).publish_many([good, bad])
    assert await redis.xlen(settings.keys.channel_stream("chat", "demo")) == 0


async def test_stream_is_capped_near_its_maxlen(redis: Redis, make_settings) -> None:
    settings = make_settings(stream_maxlen_chat=1000)
    await Publisher(redis, settings).publish_many(chat(n) for n in range(5000))
    length = await redis.xlen(settings.keys.channel_stream("chat", "demo"))
    assert 1000 <= length < 5000


async def test_unicode_and_quotes_survive_the_round_trip(redis: Redis, make_settings) -> None:
    settings = make_settings()
    text = 'PogChamp 🎉 "quoted" \\ back\\slash ñandú 日本語 \u2028'
    event = ChatEvent(id="u1", channel="demo", ts=TS, source="sim", user="ñ", text=text)
    await Publisher(redis, settings).publish(event)
    [(_, fields)] = await redis.xrange(settings.keys.channel_stream("chat", "demo"))
    assert fields["text"] == text and parse_fields(fields) == event


async def test_chat_markers_live_briefly_and_money_markers_long(
    redis: Redis, make_settings
) -> None:
    settings = make_settings(dedupe_chat_ttl_s=2, dedupe_ttl_s=3600)
    tip = DonationEvent(
        id="d1", channel="demo", ts=TS, source="streamlabs", user="bob", amount="5", currency="USD"
    )
    await Publisher(redis, settings).publish_many([chat(1), tip])
    chat_ttl_ms = await redis.pttl(settings.keys.dedupe("sim", "c1", "demo"))
    tip_ttl_ms = await redis.pttl(settings.keys.dedupe("streamlabs", "d1", "demo"))
    assert 0 < chat_ttl_ms <= 2000
    assert 3_590_000 < tip_ttl_ms <= 3_600_000
