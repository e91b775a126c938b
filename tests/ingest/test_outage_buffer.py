"""While Redis is down ingest holds what it receives, in order and bounded, and publishes it after.

Each test runs the real ingest app (lifespan included, or as a process) against
its own ``redis-server`` with AOF on, which it stops and starts again mid-test;
the journal's lock is tested on its own.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from services.ingest.app import create_app
from services.ingest.journal import HeldJournal
from services.ingest.settings import IngestSettings
from services.ingest.sources.recording import load_recording
from shared.events import DonationEvent
from shared.keys import Keys, Stream
from shared.redis_client import connect
from shared.redis_server import RedisServer
from tests.chaos.processes import start, wait_healthy
from tests.ingest.donation_payloads import streamelements_tip
from tests.ingest.twitch_payloads import example_event, webhook_body, webhook_headers
from tests.ingest.twitch_state import BROADCASTER_LOGIN

SECRET = "s3cret-donations"
TWITCH_SECRET = "s3cret-webhook-key-0123456789"
AUTH = {"authorization": f"Bearer {SECRET}"}


@pytest.fixture
async def store(restartable_redis: RedisServer) -> AsyncIterator[Redis]:
    client = connect(restartable_redis.url)
    yield client
    await client.aclose()


def settings_for(
    restartable_redis: RedisServer, tmp_path: Path, **overrides: Any
) -> IngestSettings:
    values: dict[str, Any] = {
        "redis_url": restartable_redis.url,
        "channels": ["demo", BROADCASTER_LOGIN],
        "ingest_sources": ["webhooks"],
        "donation_webhook_secret": SECRET,
        "twitch_webhook_secret": TWITCH_SECRET,
        "ingest_spill_dir": str(tmp_path / "spill"),
        "ingest_buffer_flush_s": 2.0,
    }
    return IngestSettings(_env_file=None, **values | overrides)


class Ingest:
    """The ingest app with its lifespan entered, and an HTTP client on it."""

    def __init__(self, settings: IngestSettings) -> None:
        self.donations = sorted(
            {settings.keys.channel_stream(Stream.DONATION, c) for c in settings.channels}
        )
        self.app = create_app(settings)
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://localhost",
            headers={"authorization": f"Bearer {SECRET}"},
        )

    async def tip(self, n: int) -> httpx.Response:
        return await self.http.post("/webhooks/donations", json=streamelements_tip(n))

    async def metric(self, name: str) -> float:
        text = (await self.http.get("/metrics")).text
        lines = [line for line in text.splitlines() if line.startswith(name)]
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


@pytest.fixture
def ingest_factory(tmp_path: Path) -> Any:
    async def start(restartable_redis: RedisServer, **overrides: Any) -> AsyncIterator[Ingest]:
        ingest = Ingest(settings_for(restartable_redis, tmp_path, **overrides))
        async with ingest.app.router.lifespan_context(ingest.app), ingest.http:
            yield ingest

    return start


async def amounts(store: Redis, ingest: Ingest) -> list[str]:
    """Amounts on the donation streams of every served channel's partition."""
    return [fields["amount"] for key in ingest.donations for _, fields in await store.xrange(key)]


async def wait_for_amounts(store: Redis, ingest: Ingest, count: int) -> list[str]:
    """The donation amounts on the stream once there are ``count`` (10 s at most)."""
    async with asyncio.timeout(10):
        while len(found := await amounts(store, ingest)) < count:
            await asyncio.sleep(0.05)
    return found


async def test_donations_received_while_redis_is_down_are_published_in_order_after(
    restartable_redis: RedisServer, store: Redis, ingest_factory: Any
) -> None:
    async for ingest in ingest_factory(restartable_redis):
        assert (await ingest.tip(1)).json()["published"] == 1
        restartable_redis.stop()
        held = [await ingest.tip(n) for n in range(2, 7)]
        assert [r.status_code for r in held] == [202] * 5
        assert [r.json()["held"] for r in held] == [1] * 5
        assert await ingest.metric("streamloop_ingest_buffered_events") == 5
        restartable_redis.start()
        assert (await ingest.tip(7)).status_code == 202  # queued behind the held ones
        found = await wait_for_amounts(store, ingest, 7)
        assert found == [f"{n}.00" for n in range(1, 8)]
        assert await ingest.metric("streamloop_ingest_buffered_events") == 0


async def test_past_the_bound_a_webhook_gets_503_and_nothing_of_it_is_kept(
    restartable_redis: RedisServer, store: Redis, ingest_factory: Any
) -> None:
    async for ingest in ingest_factory(restartable_redis, ingest_buffer_max_events=3):
        restartable_redis.stop()
        statuses = [(await ingest.tip(n)).status_code for n in range(1, 6)]
        assert statuses == [202, 202, 202, 503, 503]
        refused = await ingest.tip(6)
        assert refused.headers["retry-after"] == "10"
        assert "holds 3 of 3 events" in refused.json()["detail"]
        overflow = "streamloop_ingest_buffer_overflow_total"
        assert await ingest.metric(overflow) == 3
        restartable_redis.start()
        assert await wait_for_amounts(store, ingest, 3) == ["1.00", "2.00", "3.00"]
        assert (await ingest.tip(4)).json()["published"] == 1  # the retry lands


async def test_twitch_webhooks_are_held_too_and_a_redelivery_after_is_dropped(
    restartable_redis: RedisServer, store: Redis, ingest_factory: Any
) -> None:
    async for ingest in ingest_factory(restartable_redis):
        restartable_redis.stop()
        body = json.dumps(webhook_body("channel.cheer", example_event("channel.cheer"))).encode()
        headers = webhook_headers(TWITCH_SECRET, body, message_id="msg-1")
        first = await ingest.http.post("/webhooks/twitch", content=body, headers=headers)
        assert first.status_code == 204
        assert await ingest.metric("streamloop_ingest_buffered_events") == 1
        restartable_redis.start()
        assert len(await wait_for_amounts(store, ingest, 1)) == 1
        again = await ingest.http.post("/webhooks/twitch", content=body, headers=headers)
        assert again.status_code == 204
        assert len(await amounts(store, ingest)) == 1


async def test_what_is_still_held_at_shutdown_is_kept_and_published_by_the_next_start(
    restartable_redis: RedisServer, store: Redis, tmp_path: Path, ingest_factory: Any
) -> None:
    async for ingest in ingest_factory(restartable_redis, ingest_buffer_flush_s=0.3):
        restartable_redis.stop()
        for n in range(1, 4):
            assert (await ingest.tip(n)).json()["held"] == 1
    [journal] = (tmp_path / "spill").glob("held-*.jsonl")
    recording = load_recording(journal)  # replayable by hand too
    assert not recording.bad_lines
    assert [str(e.amount) for e in recording.events] == ["1.00", "2.00", "3.00"]  # type: ignore[attr-defined]
    restartable_redis.start()
    async for ingest in ingest_factory(restartable_redis):
        assert (await ingest.tip(4)).json()["held"] == 1  # queued behind the taken-over ones
        assert await wait_for_amounts(store, ingest, 4) == ["1.00", "2.00", "3.00", "4.00"]
        await wait_for_no_journal(tmp_path / "spill")


async def test_a_sigkilled_ingest_loses_none_of_the_events_it_held(
    restartable_redis: RedisServer, store: Redis, tmp_path: Path
) -> None:
    env = {
        "REDIS_URL": restartable_redis.url,
        "REDIS_KEY_PREFIX": "",
        "CHANNELS": "demo",
        "INGEST_SOURCES": "webhooks",
        "DONATION_WEBHOOK_SECRET": SECRET,
        "INGEST_SPILL_DIR": str(tmp_path / "spill"),
    }
    first = start("ingest", env, tmp_path / "first")
    try:
        await wait_healthy(first)
        restartable_redis.stop()
        async with httpx.AsyncClient(base_url=first.url, headers=AUTH) as http:
            for n in range(1, 4):
                assert (await http.post("/webhooks/donations", json=streamelements_tip(n))).json()[
                    "held"
                ] == 1
    finally:
        first.kill()
    restartable_redis.start()
    second = start("ingest", env, tmp_path / "second")
    try:
        await wait_healthy(second)
        donations = Keys().channel_stream(Stream.DONATION, "demo")
        async with asyncio.timeout(10):
            while await store.xlen(donations) < 3:
                await asyncio.sleep(0.05)
        found = [fields["amount"] for _, fields in await store.xrange(donations)]
        assert found == ["1.00", "2.00", "3.00"]
        await wait_for_no_journal(tmp_path / "spill")
    finally:
        assert second.stop() == 0
    assert "taken over 3" in second.output()


async def wait_for_no_journal(directory: Path) -> None:
    """Return once every journal in ``directory`` is gone (all published), 10 s at most."""
    async with asyncio.timeout(10):
        while await asyncio.to_thread(lambda: list(directory.glob("held-*.jsonl"))):
            await asyncio.sleep(0.05)


def test_a_journal_a_living_process_holds_is_not_taken_over(tmp_path: Path) -> None:
    living, starting = HeldJournal(tmp_path), HeldJournal(tmp_path)
    living.append([sample_tip()])
    assert starting.take_over() == []
    assert living.path.exists()
    living.keep()  # its owner stopped: the lock is released
    assert [e.id for e in starting.take_over()] == ["tip-1"]
    assert not living.path.exists()
    assert [e.id for e in load_recording(starting.path).events] == ["tip-1"]
    starting.discard()
    assert list(tmp_path.iterdir()) == []


def sample_tip() -> DonationEvent:
    """One $1 donation event."""
    return DonationEvent(
        id="tip-1",
        channel="demo",
        source="streamelements",
        ts=datetime(2026, 2, 27, 10, 30, tzinfo=UTC),
        user="fan1",
        amount=Decimal("1.00"),
        currency="USD",
        message="",
    )
