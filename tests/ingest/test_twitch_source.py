"""The twitch source end to end: the local Twitch double, twitchio, a real Redis."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr
from redis.asyncio import Redis

from services.ingest.buffer import PublishBuffer
from services.ingest.settings import IngestSettings
from services.ingest.sources.eventsub import SUBSCRIPTION_VERSIONS
from services.ingest.sources.twitch import TwitchSetupError, TwitchSource
from shared.keys import Stream
from shared.publisher import Publisher
from tests.chaos.reliability import record
from tests.ingest import twitch_state as tw
from tests.ingest.twitch_double import TwitchDouble
from tests.ingest.twitch_payloads import example_event

SUBSCRIBED_TYPES = len(SUBSCRIPTION_VERSIONS)
WAIT_S = 5.0


@pytest.fixture
async def double() -> AsyncIterator[TwitchDouble]:
    async with TwitchDouble.running(keepalive_timeout_s=10, reconnect_grace_s=5.0) as running:
        yield running


@pytest.fixture
def settings(make_settings: Callable[..., Any], double: TwitchDouble) -> IngestSettings:
    built: IngestSettings = make_settings(
        IngestSettings,
        twitch_client_id=tw.CLIENT_ID,
        twitch_client_secret=tw.CLIENT_SECRET,
        twitch_bot_id=tw.BOT_ID,
        twitch_broadcaster_id=tw.BROADCASTER_ID,
        twitch_user_token=tw.USER_TOKEN,
        twitch_refresh_token=tw.REFRESH_TOKEN,
        twitch_eventsub_ws_url=double.ws_url,
        twitch_api_url=double.api_url,
        twitch_auth_url=double.auth_url,
        twitch_viewer_poll_s=0.1,
        channels=[tw.BROADCASTER_LOGIN],
    )
    return built


class Running:
    """A source running in a task, stopped and awaited by the fixture."""

    def __init__(self, source: TwitchSource, stop: asyncio.Event, task: asyncio.Task[None]):
        self.source, self.stop, self.task = source, stop, task

    async def shut_down(self) -> None:
        self.stop.set()
        async with asyncio.timeout(WAIT_S):
            await self.task


def buffered(redis: Redis, settings: IngestSettings) -> PublishBuffer:
    """The source's way onto the streams, as the ingest lifespan builds it."""
    publisher = Publisher(redis, settings)
    return PublishBuffer(
        publisher, settings.ingest_buffer_max_events, Path(settings.ingest_spill_dir)
    )


@pytest.fixture
async def running(
    settings: IngestSettings, redis: Redis, double: TwitchDouble
) -> AsyncIterator[Running]:
    source = TwitchSource(settings, buffered(redis, settings))
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(stop))
    handle = Running(source, stop, task)
    try:
        await double.wait_for_subscribed_session(SUBSCRIBED_TYPES, timeout_s=WAIT_S)
        yield handle
    finally:
        if not task.done():
            await handle.shut_down()


async def entries(redis: Redis, settings: IngestSettings, kind: Stream) -> list[dict[str, str]]:
    found = await redis.xrange(settings.keys.channel_stream(kind, tw.BROADCASTER_LOGIN))
    return [cast("dict[str, str]", fields) for _, fields in found or []]


async def wait_for_entries(
    redis: Redis, settings: IngestSettings, kind: Stream, count: int
) -> list[dict[str, str]]:
    """The stream's entries once it holds at least ``count`` (fails after WAIT_S)."""
    async with asyncio.timeout(WAIT_S):
        while len(found := await entries(redis, settings, kind)) < count:
            await asyncio.sleep(0.02)
    return found


async def total_entries(redis: Redis, settings: IngestSettings) -> int:
    return sum([await redis.xlen(key) for key in settings.keys.event_streams()])


async def test_subscribes_to_every_type_for_the_broadcaster(
    running: Running, double: TwitchDouble
) -> None:
    session = double.live_session()
    assert session is not None
    created = {sub.type: sub for sub in double.enabled_subscriptions(session.id)}
    assert {kind: sub.version for kind, sub in created.items()} == SUBSCRIPTION_VERSIONS
    assert created["channel.chat.message"].condition == {
        "broadcaster_user_id": tw.BROADCASTER_ID,
        "user_id": tw.BOT_ID,
    }
    assert created["channel.raid"].condition == {"to_broadcaster_user_id": tw.BROADCASTER_ID}
    assert all(request["user_id"] == tw.BROADCASTER_ID for request in double.subscription_requests)


async def test_each_notification_kind_lands_on_its_stream(
    running: Running, double: TwitchDouble, redis: Redis, settings: IngestSettings
) -> None:
    await double.notify("stream.online", example_event("stream.online", id="777"))
    await double.notify("channel.chat.message", example_event("channel.chat.message"))
    await double.notify("channel.subscribe", example_event("channel.subscribe"))
    await double.notify("channel.subscribe", example_event("channel.subscribe", is_gift=True))
    await double.notify(
        "channel.subscription.message", example_event("channel.subscription.message")
    )
    gift_id = await double.notify(
        "channel.subscription.gift", example_event("channel.subscription.gift")
    )
    cheer_id = await double.notify("channel.cheer", example_event("channel.cheer", bits=250))
    await double.notify("channel.raid", example_event("channel.raid", viewers=12))
    await double.notify("channel.follow", example_event("channel.follow"))
    await double.notify("stream.offline", example_event("stream.offline"))

    lifecycle = await wait_for_entries(redis, settings, Stream.LIFECYCLE, 4)
    assert [(e["type"], e["stream_id"]) for e in lifecycle] == [
        ("stream_started", "777"),
        ("raid", "777"),
        ("follow", "777"),
        ("stream_ended", "777"),
    ]
    assert lifecycle[0]["id"] == "online:777" and lifecycle[3]["id"] == "offline:777"
    assert lifecycle[1]["user"] == "cool_user" and lifecycle[1]["count"] == "12"
    chat = await wait_for_entries(redis, settings, Stream.CHAT, 1)
    assert chat[0] | {"ts": ""} == {
        "v": "1",
        "type": "chat",
        "id": "cc106a89-1814-919d-454c-f4f2f970aae7",
        "channel": tw.BROADCASTER_LOGIN,
        "ts": "",
        "source": "twitch",
        "user": "viewer32",
        "text": "Hi chat",
    }
    subs = await wait_for_entries(redis, settings, Stream.SUB, 3)
    assert [(s["type"], s["tier"], s["months"], s["count"], s["amount"]) for s in subs] == [
        ("sub", "1000", "1", "1", "2.50"),
        ("resub", "2000", "15", "1", "5.00"),
        ("gift", "1000", "1", "2", "5.00"),
    ], "the gifted sub's own channel.subscribe is not counted a second time"
    assert subs[2]["id"] == gift_id
    bits = await wait_for_entries(redis, settings, Stream.DONATION, 1)
    assert (bits[0]["id"], bits[0]["bits"], bits[0]["amount"]) == (cheer_id, "250", "2.50")
    assert await total_entries(redis, settings) == 9


async def test_helix_poll_gives_viewer_counts_and_a_missed_start_once(
    running: Running, double: TwitchDouble, redis: Redis, settings: IngestSettings
) -> None:
    double.set_live("555", viewers=42, started_at=datetime(2026, 2, 27, 10, 0, tzinfo=UTC))
    viewers = await wait_for_entries(redis, settings, Stream.VIEWERS, 2)
    assert {(v["type"], v["count"], v["channel"]) for v in viewers} == {
        ("viewer_count", "42", tw.BROADCASTER_LOGIN)
    }
    await double.notify("stream.online", example_event("stream.online", id="555"))
    double.set_live("555", viewers=50)
    await double.wait_until(lambda: double.streams_requests >= 3)
    await double.notify("channel.follow", example_event("channel.follow"))

    lifecycle = await wait_for_entries(redis, settings, Stream.LIFECYCLE, 2)
    assert [(e["type"], e["id"], e["stream_id"]) for e in lifecycle] == [
        ("stream_started", "online:555", "555"),
        ("follow", lifecycle[1]["id"], "555"),
    ], "the poll's start and the late stream.online notification are one event"
    assert lifecycle[0]["ts"] == "2026-02-27T10:00:00Z"
    latest = await wait_for_entries(redis, settings, Stream.VIEWERS, len(viewers) + 2)
    assert latest[-1]["count"] == "50"


async def test_helix_poll_ends_a_stream_whose_offline_notification_was_missed(
    running: Running, double: TwitchDouble, redis: Redis, settings: IngestSettings
) -> None:
    double.set_live("556", viewers=7)
    await wait_for_entries(redis, settings, Stream.VIEWERS, 1)
    double.set_offline()
    lifecycle = await wait_for_entries(redis, settings, Stream.LIFECYCLE, 2)
    assert [(e["type"], e["id"]) for e in lifecycle] == [
        ("stream_started", "online:556"),
        ("stream_ended", "offline:556"),
    ]
    await double.notify("stream.offline", example_event("stream.offline"))
    await double.notify("channel.chat.message", example_event("channel.chat.message"))
    await wait_for_entries(redis, settings, Stream.CHAT, 1)
    assert len(await entries(redis, settings, Stream.LIFECYCLE)) == 2, "one end per stream"


async def test_session_reconnect_keeps_subscriptions_and_events_flowing(
    running: Running, double: TwitchDouble, redis: Redis, settings: IngestSettings
) -> None:
    session = double.live_session()
    assert session is not None
    requests_before = len(double.subscription_requests)

    await double.reconnect(session.id)
    # Twitch keeps using the old connection until the new one is welcomed.
    await double.notify("channel.cheer", example_event("channel.cheer", bits=1))
    await double.wait_until(lambda: [c.closed_by for c in session.connections] == ["client", ""])
    await double.notify("channel.cheer", example_event("channel.cheer", bits=2))

    donations = await wait_for_entries(redis, settings, Stream.DONATION, 2)
    assert [d["bits"] for d in donations] == ["1", "2"]
    assert [c.endpoint for c in session.connections] == ["/ws", "/ws/reconnect"]
    assert len(double.enabled_subscriptions(session.id)) == SUBSCRIBED_TYPES
    assert len(double.subscription_requests) == requests_before, "subscriptions carried over"


async def test_dropped_socket_resubscribes_on_a_new_session(
    running: Running, double: TwitchDouble, redis: Redis, settings: IngestSettings
) -> None:
    first = double.live_session()
    assert first is not None
    await double.drop(first.id)
    assert not double.enabled_subscriptions(first.id), "Twitch drops a closed session's subs"

    second = await double.wait_for_subscribed_session(SUBSCRIBED_TYPES, other_than=first.id)
    await double.notify("channel.chat.message", example_event("channel.chat.message"))

    chat = await wait_for_entries(redis, settings, Stream.CHAT, 1)
    assert chat[0]["text"] == "Hi chat"
    assert second.connections[0].endpoint == "/ws"


async def test_silent_connection_is_replaced_after_the_keepalive_timeout(
    settings: IngestSettings, redis: Redis
) -> None:
    async with TwitchDouble.running(keepalive_timeout_s=1) as quick:
        settings = settings.model_copy(
            update={
                "twitch_eventsub_ws_url": quick.ws_url,
                "twitch_api_url": quick.api_url,
                "twitch_auth_url": quick.auth_url,
            }
        )
        stop = asyncio.Event()
        task = asyncio.create_task(TwitchSource(settings, buffered(redis, settings)).run(stop))
        try:
            first = await quick.wait_for_subscribed_session(SUBSCRIBED_TYPES)
            quick.silence(first.id)
            await quick.wait_for_subscribed_session(SUBSCRIBED_TYPES, other_than=first.id)
            await quick.notify("channel.chat.message", example_event("channel.chat.message"))
            await wait_for_entries(redis, settings, Stream.CHAT, 1)
            assert first.connections[0].closed_by == "client"
        finally:
            stop.set()
            await asyncio.wait_for(task, WAIT_S)


async def test_malformed_notification_is_logged_once_and_not_published(
    running: Running,
    double: TwitchDouble,
    redis: Redis,
    settings: IngestSettings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="services.ingest.twitch")
    bad_id = await double.notify("channel.cheer", example_event("channel.cheer", bits="lots"))
    await double.notify("channel.chat.message", example_event("channel.chat.message"))
    await wait_for_entries(redis, settings, Stream.CHAT, 1)

    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].name == "services.ingest.twitch"
    assert bad_id in warnings[0].getMessage()
    assert "event.bits must be an integer, got 'lots'" in warnings[0].getMessage()
    assert await total_entries(redis, settings) == 1


async def test_messages_that_are_not_notifications_do_not_stop_the_socket(
    running: Running, double: TwitchDouble, redis: Redis, settings: IngestSettings
) -> None:
    session = double.live_session()
    assert session is not None
    await double.send(session.id, "this is not json")
    await double.send(session.id, {"no": "metadata"})
    unknown = example_event("channel.cheer")
    await double.send(
        session.id,
        {
            "metadata": {
                "message_id": "m-x",
                "message_type": "notification",
                "message_timestamp": tw.rfc3339(),
            },
            "payload": {"subscription": {"type": "channel.ban", "version": "1"}, "event": unknown},
        },
    )
    await double.notify("channel.chat.message", example_event("channel.chat.message"))
    await wait_for_entries(redis, settings, Stream.CHAT, 1)
    assert await total_entries(redis, settings) == 1
    assert session.current is not None, "still the same connection"


async def test_stop_closes_the_socket_and_returns(running: Running, double: TwitchDouble) -> None:
    session = double.live_session()
    assert session is not None
    await running.shut_down()
    await double.wait_until(lambda: session.connections[-1].closed_by == "client")
    assert running.task.result() is None


async def test_user_token_near_expiry_is_refreshed_through_the_oauth_double(
    settings: IngestSettings, redis: Redis, double: TwitchDouble
) -> None:
    double.add_user_token("expiringtoken0000000000000000", tw.BROADCASTER_ID, expires_in=60)
    expiring = settings.model_copy(
        update={"twitch_user_token": SecretStr("expiringtoken0000000000000000")}
    )
    stop = asyncio.Event()
    task = asyncio.create_task(TwitchSource(expiring, buffered(redis, expiring)).run(stop))
    try:
        await double.wait_for_subscribed_session(SUBSCRIBED_TYPES)
        assert double.refreshes == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT_S)


async def test_stop_while_twitch_is_unreachable_returns(
    settings: IngestSettings, redis: Redis, double: TwitchDouble
) -> None:
    await double.stop()
    stop = asyncio.Event()
    task = asyncio.create_task(TwitchSource(settings, buffered(redis, settings)).run(stop))
    await asyncio.sleep(0.3)
    assert not task.done(), "an unreachable Twitch is retried, not fatal"
    stop.set()
    await asyncio.wait_for(task, WAIT_S)


async def test_refused_credentials_and_missing_settings_are_setup_errors(
    settings: IngestSettings, redis: Redis
) -> None:
    buffer = buffered(redis, settings)
    wrong = settings.model_copy(update={"twitch_client_secret": SecretStr("not-the-secret")})
    with pytest.raises(TwitchSetupError, match="Twitch refused the credentials"):
        await asyncio.wait_for(TwitchSource(wrong, buffer).run(asyncio.Event()), WAIT_S)
    empty = settings.model_copy(update={"twitch_bot_id": "", "twitch_client_id": ""})
    with pytest.raises(TwitchSetupError, match="TWITCH_CLIENT_ID, TWITCH_BOT_ID"):
        await TwitchSource(empty, buffer).run(asyncio.Event())


async def test_a_notification_dated_past_the_skew_ahead_is_dead_lettered_with_the_reason(
    running: Running, double: TwitchDouble, redis: Redis, settings: IngestSettings
) -> None:
    ahead = tw.rfc3339(datetime.now(UTC) + timedelta(days=1))
    await double.notify("stream.online", example_event("stream.online", id="9", started_at=ahead))
    await double.notify("channel.chat.message", example_event("channel.chat.message"))
    await wait_for_entries(redis, settings, Stream.CHAT, 1)

    async with asyncio.timeout(WAIT_S):
        while not (dead := await redis.xrange(settings.keys.channel_dead(tw.BROADCASTER_LOGIN))):
            await asyncio.sleep(0.02)
    [(_, letter)] = dead
    assert letter["group"] == "ingest:twitch"
    assert letter["stream"] == settings.keys.channel_stream(Stream.LIFECYCLE, tw.BROADCASTER_LOGIN)
    assert "stream_started online:9" in letter["reason"]
    assert "ahead of this server's clock" in letter["reason"]
    assert await entries(redis, settings, Stream.LIFECYCLE) == []
    assert not running.task.done(), "the source keeps running"
    record(
        "future-eventsub",
        "an EventSub socket stream.online dated a day ahead of the wall clock",
        1,
        "dead-lettered with the reason (group ingest:twitch, requeueable); not published; "
        "the next notification published; the source keeps running",
        lost=0,
        doubled=0,
    )


async def test_a_notification_for_a_channel_not_served_is_dropped_and_counted(
    running: Running, double: TwitchDouble, redis: Redis, settings: IngestSettings
) -> None:
    def dropped() -> float:
        value = REGISTRY.get_sample_value(
            "streamloop_ingest_unknown_channel_total", {"type": "channel.cheer"}
        )
        return value or 0.0

    before = dropped()
    await double.notify(
        "channel.cheer", example_event("channel.cheer", bits=7, broadcaster_user_login="stranger")
    )
    cheer_id = await double.notify("channel.cheer", example_event("channel.cheer", bits=8))
    bits = await wait_for_entries(redis, settings, Stream.DONATION, 1)
    assert [(b["id"], b["channel"]) for b in bits] == [(cheer_id, tw.BROADCASTER_LOGIN)]
    assert dropped() == before + 1
    assert await total_entries(redis, settings) == 1
