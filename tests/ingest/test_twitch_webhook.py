"""POST /webhooks/twitch: signed notifications publish once; everything else is refused."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from services.ingest.buffer import PublishBuffer
from services.ingest.settings import IngestSettings
from services.ingest.sources.eventsub import LiveStreams
from services.ingest.state import IngestState
from services.ingest.webhooks.twitch import router
from shared.app_state import set_state
from shared.clock import utc_now
from shared.keys import Stream
from shared.publisher import Publisher
from shared.tasks import Supervisor
from tests.ingest.twitch_payloads import example_event, webhook_body, webhook_headers
from tests.ingest.twitch_state import BROADCASTER_LOGIN, rfc3339

SECRET = "s3cret-webhook-key-0123456789"
URL = "/webhooks/twitch"


def build_settings(make_settings: Callable[..., Any], **overrides: Any) -> IngestSettings:
    values: dict[str, Any] = {
        "twitch_webhook_secret": SECRET,
        "webhook_max_body_bytes": 4096,
        "channels": [BROADCASTER_LOGIN],
    }
    built: IngestSettings = make_settings(IngestSettings, **values | overrides)
    return built


@pytest.fixture
def settings(make_settings: Callable[..., Any]) -> IngestSettings:
    return build_settings(make_settings)


async def client_for(settings: IngestSettings, redis: Redis) -> httpx.AsyncClient:
    app = FastAPI()
    app.include_router(router)
    publisher = Publisher(redis, settings)
    buffer = PublishBuffer(publisher, 1000, Path(settings.ingest_spill_dir))
    set_state(app, IngestState(redis, Supervisor(), settings, publisher, buffer, LiveStreams()))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest")


@pytest.fixture
async def client(settings: IngestSettings, redis: Redis) -> AsyncIterator[httpx.AsyncClient]:
    async with await client_for(settings, redis) as http:
        yield http


def cheer_body(bits: int = 100) -> bytes:
    return json.dumps(
        webhook_body("channel.cheer", example_event("channel.cheer", bits=bits))
    ).encode()


async def fields_on(redis: Redis, settings: IngestSettings, kind: Stream) -> list[dict[str, str]]:
    found = await redis.xrange(settings.keys.channel_stream(kind, BROADCASTER_LOGIN))
    return [cast("dict[str, str]", fields) for _, fields in found or []]


async def stream_entries(redis: Redis, settings: IngestSettings) -> int:
    return sum([await redis.xlen(key) for key in settings.keys.event_streams()])


async def test_valid_notification_is_published(
    client: httpx.AsyncClient, redis: Redis, settings: IngestSettings
) -> None:
    body = cheer_body(bits=300)
    headers = webhook_headers(SECRET, body, message_id="msg-1")
    response = await client.post(URL, content=body, headers=headers)
    assert response.status_code == 204
    entries = await fields_on(redis, settings, Stream.DONATION)
    assert len(entries) == 1
    fields = entries[0]
    assert (fields["type"], fields["id"], fields["source"]) == ("bits", "msg-1", "twitch")
    assert (fields["channel"], fields["user"], fields["bits"]) == (
        BROADCASTER_LOGIN,
        "cool_user",
        "300",
    )
    assert fields["amount"] == "3.00"
    assert await redis.get(settings.keys.twitch_webhook_message("msg-1")) == "1"


async def test_redelivered_message_is_published_once(
    client: httpx.AsyncClient, redis: Redis, settings: IngestSettings
) -> None:
    body = cheer_body()
    first = webhook_headers(SECRET, body, message_id="msg-2")
    again = webhook_headers(SECRET, body, message_id="msg-2")  # Twitch retries: new timestamp
    assert (await client.post(URL, content=body, headers=first)).status_code == 204
    assert (await client.post(URL, content=body, headers=again)).status_code == 204
    assert (await client.post(URL, content=body, headers=first)).status_code == 204
    assert await stream_entries(redis, settings) == 1


async def test_verification_challenge_is_answered_as_text(client: httpx.AsyncClient) -> None:
    message = webhook_body("channel.cheer", {}) | {"challenge": "pogchamp-kappa-360noscope"}
    del message["event"]
    body = json.dumps(message).encode()
    headers = webhook_headers(SECRET, body, message_type="webhook_callback_verification")
    response = await client.post(URL, content=body, headers=headers)
    assert response.status_code == 200
    assert response.text == "pogchamp-kappa-360noscope"
    assert response.headers["content-type"].startswith("text/plain")


async def test_revocation_is_acknowledged_and_logged(
    client: httpx.AsyncClient,
    redis: Redis,
    settings: IngestSettings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    message = webhook_body("channel.cheer", {})
    message["subscription"]["status"] = "authorization_revoked"
    del message["event"]
    body = json.dumps(message).encode()
    with caplog.at_level(logging.WARNING, logger="services.ingest.webhooks.twitch"):
        response = await client.post(
            URL, content=body, headers=webhook_headers(SECRET, body, message_type="revocation")
        )
    assert response.status_code == 204
    assert any("authorization_revoked" in r.getMessage() for r in caplog.records)
    assert await stream_entries(redis, settings) == 0


async def test_unknown_subscription_type_is_acknowledged_not_published(
    client: httpx.AsyncClient, redis: Redis, settings: IngestSettings
) -> None:
    body = json.dumps(webhook_body("channel.ban", {"user_login": "someone"})).encode()
    response = await client.post(URL, content=body, headers=webhook_headers(SECRET, body))
    assert response.status_code == 204
    assert await stream_entries(redis, settings) == 0


def forged(body: bytes) -> dict[str, str]:
    headers = webhook_headers(SECRET, body)
    headers["Twitch-Eventsub-Message-Signature"] = "sha256=" + "0" * 64
    return headers


def signed_with_other_secret(body: bytes) -> dict[str, str]:
    return webhook_headers("another-secret-0123456789", body)


def tampered_id(body: bytes) -> dict[str, str]:
    return webhook_headers(SECRET, body) | {"Twitch-Eventsub-Message-Id": "another-id"}


def stale(body: bytes) -> dict[str, str]:
    return webhook_headers(SECRET, body, timestamp=rfc3339(utc_now() - timedelta(minutes=10)))


def from_the_future(body: bytes) -> dict[str, str]:
    return webhook_headers(SECRET, body, timestamp=rfc3339(utc_now() + timedelta(minutes=11)))


def unparseable_time(body: bytes) -> dict[str, str]:
    return webhook_headers(SECRET, body, timestamp="yesterday at noon")


def without(name: str) -> Callable[[bytes], dict[str, str]]:
    def headers(body: bytes) -> dict[str, str]:
        signed = webhook_headers(SECRET, body)
        del signed[name]
        return signed

    return headers


@pytest.mark.parametrize(
    "make_headers",
    [
        forged,
        signed_with_other_secret,
        tampered_id,
        stale,
        from_the_future,
        unparseable_time,
        without("Twitch-Eventsub-Message-Signature"),
        without("Twitch-Eventsub-Message-Id"),
        without("Twitch-Eventsub-Message-Timestamp"),
        without("Twitch-Eventsub-Message-Type"),
    ],
)
async def test_unverifiable_request_is_forbidden(
    client: httpx.AsyncClient,
    redis: Redis,
    settings: IngestSettings,
    make_headers: Callable[[bytes], dict[str, str]],
) -> None:
    body = cheer_body()
    response = await client.post(URL, content=body, headers=make_headers(body))
    assert response.status_code == 403, response.text
    assert await stream_entries(redis, settings) == 0


async def test_stale_timestamp_reason_names_the_limit(client: httpx.AsyncClient) -> None:
    body = cheer_body()
    response = await client.post(URL, content=body, headers=stale(body))
    assert "the limit is 600 s" in response.json()["detail"]


async def test_oversized_body_is_refused_without_trusting_content_length(
    client: httpx.AsyncClient, redis: Redis, settings: IngestSettings
) -> None:
    event = example_event("channel.cheer", message="x" * 5000)
    body = json.dumps(webhook_body("channel.cheer", event)).encode()
    headers = webhook_headers(SECRET, body)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    declared = await client.post(URL, content=body, headers=headers)
    streamed = await client.post(URL, content=chunks(), headers=headers)
    assert "content-length" not in streamed.request.headers
    assert (declared.status_code, streamed.status_code) == (413, 413)
    assert await stream_entries(redis, settings) == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
async def test_wrong_content_type_is_unsupported(
    client: httpx.AsyncClient, redis: Redis, settings: IngestSettings, content_type: str
) -> None:
    body = cheer_body()
    headers = webhook_headers(SECRET, body) | {"Content-Type": content_type}
    response = await client.post(URL, content=body, headers=headers)
    assert response.status_code == 415
    assert await stream_entries(redis, settings) == 0


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "body is not JSON"),
        (b"[1, 2]", "body must be a JSON object"),
        (
            json.dumps(webhook_body("channel.cheer", example_event("channel.cheer", bits="x"))),
            "channel.cheer: event.bits must be an integer",
        ),
        (json.dumps({"subscription": {"type": "channel.cheer"}}), "subscription.version"),
    ],
)
async def test_json_that_does_not_fit_is_a_bad_request(
    client: httpx.AsyncClient, redis: Redis, settings: IngestSettings, body: Any, reason: str
) -> None:
    raw = body if isinstance(body, bytes) else body.encode()
    response = await client.post(URL, content=raw, headers=webhook_headers(SECRET, raw))
    assert response.status_code == 400
    assert reason in response.json()["detail"]
    assert await stream_entries(redis, settings) == 0


async def test_missing_secret_disables_the_route(
    make_settings: Callable[..., Any], redis: Redis
) -> None:
    settings = build_settings(make_settings, twitch_webhook_secret="")
    body = cheer_body()
    async with await client_for(settings, redis) as client:
        response = await client.post(URL, content=body, headers=webhook_headers("", body))
    assert response.status_code == 503
    assert "TWITCH_WEBHOOK_SECRET" in response.json()["detail"]
    assert await stream_entries(redis, settings) == 0


async def test_stream_lifecycle_over_webhooks_tracks_the_stream(
    client: httpx.AsyncClient, redis: Redis, settings: IngestSettings
) -> None:
    for kind in ("stream.online", "channel.follow", "stream.offline"):
        body = json.dumps(webhook_body(kind, example_event(kind))).encode()
        headers = webhook_headers(SECRET, body, subscription_type=kind)
        assert (await client.post(URL, content=body, headers=headers)).status_code == 204
    lifecycle = await fields_on(redis, settings, Stream.LIFECYCLE)
    assert [(f["type"], f["stream_id"]) for f in lifecycle] == [
        ("stream_started", "9001"),
        ("follow", "9001"),
        ("stream_ended", "9001"),
    ]


async def test_seen_message_id_is_not_processed_again_even_with_another_body(
    client: httpx.AsyncClient, redis: Redis, settings: IngestSettings
) -> None:
    kind = "channel.chat.message"
    for chat_id in ("chat-a", "chat-b"):  # the publisher alone would take both
        event = example_event(kind, message_id=chat_id)
        body = json.dumps(webhook_body(kind, event)).encode()
        headers = webhook_headers(SECRET, body, message_id="msg-3", subscription_type=kind)
        assert (await client.post(URL, content=body, headers=headers)).status_code == 204
    entries = await fields_on(redis, settings, Stream.CHAT)
    assert [fields["id"] for fields in entries] == ["chat-a"]


async def test_a_notification_dated_past_the_skew_ahead_is_refused_with_the_reason(
    client: httpx.AsyncClient, redis: Redis, settings: IngestSettings
) -> None:
    """Inside the freshness window (600 s) but over MAX_CLOCK_SKEW_S (300 s) ahead: 422."""
    body = cheer_body()
    ahead = rfc3339(utc_now() + timedelta(seconds=450))
    headers = webhook_headers(SECRET, body, message_id="msg-ahead", timestamp=ahead)
    response = await client.post(URL, content=body, headers=headers)
    assert response.status_code == 422
    assert "ahead of this server's clock" in response.json()["detail"]
    assert await stream_entries(redis, settings) == 0
    assert await redis.get(settings.keys.twitch_webhook_message("msg-ahead")) is None


@pytest.mark.parametrize(
    "timestamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59Z", "NaN", "x" * 5000]
)
async def test_an_unrepresentable_message_timestamp_is_a_403(
    client: httpx.AsyncClient, redis: Redis, settings: IngestSettings, timestamp: str
) -> None:
    body = cheer_body()
    headers = webhook_headers(SECRET, body, timestamp=timestamp)
    response = await client.post(URL, content=body, headers=headers)
    assert response.status_code == 403
    assert "RFC 3339" in response.json()["detail"] or "off" in response.json()["detail"]
    assert await stream_entries(redis, settings) == 0
