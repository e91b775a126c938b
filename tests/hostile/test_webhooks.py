"""Hostile requests to the two webhooks: no 5xx, nothing published that was not earned."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from services.ingest.settings import IngestSettings
from shared.redis_client import connect_settings
from tests.hostile.strategies import JUNK_TEXT
from tests.ingest.ingest_app import ingest_client
from tests.ingest.twitch_payloads import example_event, webhook_body
from tests.ingest.twitch_state import BROADCASTER_LOGIN, rfc3339

DONATION_SECRET = "s3cret-donations"
TWITCH_SECRET = "s3cret-webhook-key-0123456789"
HYPOTHESIS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

HEADER_TEXT = st.text(st.characters(codec="latin-1", exclude_categories=["Cc"]), max_size=60)
"""What a client can put in a header value (latin-1, no control characters)."""
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=15,
)
CONTENT_TYPES = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "APPLICATION/JSON; charset=utf-8",
            "text/plain",
            "",
            "application/jsonx",
        ]
    ),
    HEADER_TEXT,
)


class App:
    """The in-process ingest app and a Redis client, both on the test's event loop."""

    def __init__(self, runner: asyncio.Runner, settings: IngestSettings) -> None:
        self.runner = runner
        self.settings = settings
        self._cm: AbstractAsyncContextManager[httpx.AsyncClient] = ingest_client(settings)
        self.client: httpx.AsyncClient = runner.run(self._cm.__aenter__())
        self.redis: Redis = connect_settings(settings)

    def close(self) -> None:
        self.runner.run(self.redis.aclose())
        self.runner.run(self._cm.__aexit__(None, None, None))

    async def entries(self) -> int:
        """Entries in every event stream and the dead-letter stream."""
        keys = self.settings.keys
        return sum(
            [await self.redis.xlen(key) for key in [*keys.event_streams(), *keys.dead_streams()]]
        )

    def post(self, url: str, **kwargs: Any) -> tuple[httpx.Response, int]:
        """POST and return (response, entries published by it)."""

        # Header values go out as latin-1 octets, the way a raw HTTP client could send them.
        headers = {k: v.encode("latin-1") for k, v in kwargs.pop("headers", {}).items()}
        kwargs["headers"] = headers

        async def go() -> tuple[httpx.Response, int]:
            before = await self.entries()
            response = await self.client.post(url, **kwargs)
            return response, await self.entries() - before

        return self.runner.run(go())


@pytest.fixture
def app(runner: asyncio.Runner, make_settings: Any, hostile_cleanup: None) -> Iterator[App]:
    settings = make_settings(
        IngestSettings,
        ingest_sources=["webhooks"],
        channels=["demo", "other", BROADCASTER_LOGIN],
        donation_webhook_secret=DONATION_SECRET,
        twitch_webhook_secret=TWITCH_SECRET,
        webhook_max_body_bytes=4096,
    )
    running = App(runner, settings)
    yield running
    running.close()


# ---------------------------------------------------------------- donations

STREAMLABS_ITEM = st.fixed_dictionaries(
    {
        "_id": st.one_of(st.uuids().map(str), JUNK_TEXT),
        "name": st.one_of(st.just("viewer"), JUNK_TEXT),
        "amount": st.one_of(st.just("10.00"), JUNK_TEXT, st.integers(), st.floats()),
        "currency": st.one_of(st.just("EUR"), JUNK_TEXT),
        "message": st.one_of(st.just("hi"), JUNK_TEXT),
        "created_at": st.one_of(st.integers(), JUNK_TEXT),
    }
)
DONATION_BODIES = st.one_of(
    st.text(max_size=200).map(str.encode),
    st.binary(max_size=200),
    JSON.map(lambda value: json.dumps(value).encode()),
    st.builds(
        lambda items: json.dumps({"type": "donation", "message": items}).encode(),
        st.lists(STREAMLABS_ITEM, max_size=3),
    ),
    st.binary(min_size=4097, max_size=5000),  # over the cap: refused before decoding
)


def donation_auth(body: bytes, kind: str, junk: str) -> dict[str, str]:
    good_signature = hmac.new(DONATION_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {
        "none": {},
        "bearer": {"authorization": f"Bearer {DONATION_SECRET}"},
        "bad-bearer": {"authorization": f"Bearer {junk}"},
        "signature": {"x-signature": f"sha256={good_signature}"},
        "bad-signature": {"x-signature": junk},
        "raw-junk": {"authorization": junk, "x-signature": junk},
    }[kind]


@HYPOTHESIS
@given(
    body=DONATION_BODIES,
    content_type=CONTENT_TYPES,
    auth=st.sampled_from(
        ["none", "bearer", "bad-bearer", "signature", "bad-signature", "raw-junk"]
    ),
    junk=HEADER_TEXT,
    channel=st.one_of(st.none(), st.sampled_from(["demo", "OTHER", "nope"]), st.text(max_size=30)),
)
def test_donation_webhook_never_5xx_and_publishes_only_when_authenticated(
    app: App, body: bytes, content_type: str, auth: str, junk: str, channel: str | None
) -> None:
    headers = {"content-type": content_type, **donation_auth(body, auth, junk)}
    params = {} if channel is None else {"channel": channel}
    response, published = app.post(
        "/webhooks/donations", content=body, headers=headers, params=params
    )

    assert response.status_code < 500, response.text
    authenticated = auth in {"bearer", "signature"} or (
        auth == "bad-bearer" and junk.strip() == DONATION_SECRET
    )
    if response.status_code == 202:
        assert authenticated
        assert published == response.json()["published"]
    else:
        assert published == 0, response.text
    if not authenticated:
        assert response.status_code in {401, 403, 404, 413, 415}, response.text


def test_an_authenticated_non_utf8_donation_body_is_a_400(app: App) -> None:
    response, published = app.post(
        "/webhooks/donations",
        content=b"\x80",
        headers={"content-type": "application/json", "authorization": f"Bearer {DONATION_SECRET}"},
    )
    assert response.status_code == 400 and published == 0


# ---------------------------------------------------------------- twitch

TIMESTAMPS = st.one_of(
    st.builds(rfc3339),
    HEADER_TEXT,
    st.sampled_from(
        [
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z",
            "2026-02-30T10:00:00Z",
            "2026-02-27T10:30:00",
            "2026-02-27T10:30:00+25:00",
            "1e9",
            "NaN",
        ]
    ),
)
CHEER_BODIES = st.builds(
    lambda bits, user, broadcaster: json.dumps(
        webhook_body(
            "channel.cheer",
            example_event(
                "channel.cheer", bits=bits, user_login=user, broadcaster_user_login=broadcaster
            ),
        )
    ).encode(),
    st.one_of(st.integers(), JUNK_TEXT, st.none()),
    st.one_of(st.just("cheerer"), JUNK_TEXT, st.none()),
    st.one_of(st.just("loopchannel"), JUNK_TEXT),
)
TWITCH_BODIES = st.one_of(
    st.binary(max_size=200),
    JSON.map(lambda value: json.dumps(value).encode()),
    CHEER_BODIES,
    st.builds(lambda challenge: json.dumps({"challenge": challenge}).encode(), JSON),
)
MESSAGE_TYPES = st.one_of(
    st.sampled_from(["notification", "webhook_callback_verification", "revocation"]), HEADER_TEXT
)


@HYPOTHESIS
@given(
    body=TWITCH_BODIES,
    content_type=CONTENT_TYPES,
    signed=st.booleans(),
    message_id=st.one_of(st.uuids().map(str), HEADER_TEXT),
    timestamp=TIMESTAMPS,
    signature=HEADER_TEXT,
    message_type=MESSAGE_TYPES,
    drop=st.sets(st.sampled_from(["id", "timestamp", "signature", "type"])),
)
def test_twitch_webhook_never_5xx_and_publishes_only_signed_notifications(
    app: App,
    body: bytes,
    content_type: str,
    signed: bool,
    message_id: str,
    timestamp: str,
    signature: str,
    message_type: str,
    drop: set[str],
) -> None:
    if signed:
        message_id = f"{message_id}-{uuid.uuid4()}"  # no accidental redelivery across examples
        digest = hmac.new(
            TWITCH_SECRET.encode(), message_id.encode() + timestamp.encode() + body, hashlib.sha256
        ).hexdigest()
        signature = f"sha256={digest}"
    named = {
        "id": ("Twitch-Eventsub-Message-Id", message_id),
        "timestamp": ("Twitch-Eventsub-Message-Timestamp", timestamp),
        "signature": ("Twitch-Eventsub-Message-Signature", signature),
        "type": ("Twitch-Eventsub-Message-Type", message_type),
    }
    headers = {"content-type": content_type}
    headers |= {name: value for key, (name, value) in named.items() if key not in drop}
    response, published = app.post("/webhooks/twitch", content=body, headers=headers)

    assert response.status_code < 500, response.text
    if published:
        assert published == 1
        assert signed and response.status_code == 204 and message_type == "notification"
    if not signed:
        assert published == 0
        assert response.status_code in {403, 413, 415}, response.text
