"""POST /webhooks/donations: Streamlabs and StreamElements payloads, auth, and bad input."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from services.ingest.settings import IngestSettings
from shared.clock import format_ts, parse_ts, utc_now
from tests.chaos.reliability import record
from tests.ingest.ingest_app import ingest_client

SECRET = "s3cret-donations"
STREAMLABS = {
    "type": "donation",
    "event_id": "evt-1",
    "message": [
        {
            "_id": "sl-1",
            "name": "viewer1",
            "amount": "10.00",
            "currency": "EUR",
            "message": "great stream",
            "created_at": 1772188200,
        }
    ],
}
STREAMELEMENTS = {
    "_id": "se-evt",
    "type": "tip",
    "createdAt": "2026-02-27T10:30:00.000Z",
    "data": {"tipId": "se-1", "username": "viewer2", "amount": 5, "currency": "USD", "message": ""},
}


@pytest.fixture
async def client(make_settings, redis: Redis) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        IngestSettings,
        ingest_sources=["webhooks"],
        channels=["demo", "other"],
        donation_webhook_secret=SECRET,
        webhook_max_body_bytes=4096,
    )
    async with ingest_client(settings) as http:
        http.headers["authorization"] = f"Bearer {SECRET}"
        yield http


async def donations(redis: Redis, make_settings) -> list[dict[str, str]]:
    stream = make_settings().keys.channel_stream("donation", "demo")
    return [fields for _, fields in await redis.xrange(stream)]


async def post(client: httpx.AsyncClient, payload: Any, **kwargs: Any) -> httpx.Response:
    return await client.post("/webhooks/donations", json=payload, **kwargs)


class TestAccepted:
    async def test_streamlabs_donation_is_converted_to_usd_and_published(
        self, client: httpx.AsyncClient, redis: Redis, make_settings
    ) -> None:
        response = await post(client, STREAMLABS)
        assert response.status_code == 202, response.text
        [entry] = await donations(redis, make_settings)
        assert entry["type"] == "donation" and entry["source"] == "streamlabs"
        assert entry["id"] == "sl-1" and entry["user"] == "viewer1" and entry["channel"] == "demo"
        assert entry["amount"] == "10.80" and entry["currency"] == "EUR"
        assert entry["message"] == "great stream"

    async def test_streamelements_tip_is_published_for_the_requested_channel(
        self, client: httpx.AsyncClient, redis: Redis, make_settings
    ) -> None:
        response = await post(client, STREAMELEMENTS, params={"channel": "other"})
        assert response.status_code == 202
        [entry] = await donations(redis, make_settings)
        assert (entry["source"], entry["id"], entry["channel"]) == (
            "streamelements",
            "se-1",
            "other",
        )
        assert entry["amount"] == "5.00" and entry["user"] == "viewer2"

    async def test_hmac_signature_is_accepted_instead_of_a_bearer_token(
        self, client: httpx.AsyncClient, redis: Redis, make_settings
    ) -> None:
        body = json.dumps(STREAMELEMENTS).encode()
        signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "authorization": "",
            "x-signature": f"sha256={signature}",
            "content-type": "application/json",
        }
        response = await client.post("/webhooks/donations", content=body, headers=headers)
        assert response.status_code == 202
        assert len(await donations(redis, make_settings)) == 1

    async def test_the_same_donation_twice_is_published_once(
        self, client: httpx.AsyncClient, redis: Redis, make_settings
    ) -> None:
        await post(client, STREAMLABS)
        second = await post(client, STREAMLABS)
        assert second.json() == {"published": 0, "duplicates": 1, "held": 0}
        assert len(await donations(redis, make_settings)) == 1


class TestRefused:
    @pytest.mark.parametrize(
        ("headers", "status"),
        [
            ({"authorization": ""}, 401),
            ({"authorization": "Bearer wrong"}, 403),
            ({"authorization": "", "x-signature": "sha256=00ff"}, 403),
        ],
    )
    async def test_missing_or_wrong_credentials(
        self, client: httpx.AsyncClient, redis: Redis, make_settings, headers, status
    ) -> None:
        response = await post(client, STREAMLABS, headers=headers)
        assert response.status_code == status
        assert await donations(redis, make_settings) == []

    @pytest.mark.parametrize(
        ("payload", "status", "says"),
        [
            ({"type": "follow"}, 422, "unrecognised payload"),
            (
                {**STREAMELEMENTS, "data": {**STREAMELEMENTS["data"], "currency": "XYZ"}},
                422,
                "unknown currency 'XYZ'",
            ),
            (
                {**STREAMELEMENTS, "data": {**STREAMELEMENTS["data"], "currency": "BTN"}},
                422,
                "no USD rate for BTN",
            ),
            (
                {**STREAMELEMENTS, "data": {**STREAMELEMENTS["data"], "amount": "lots"}},
                422,
                "not a number",
            ),
            ({**STREAMELEMENTS, "data": {**STREAMELEMENTS["data"], "amount": -5}}, 422, "positive"),
            ({**STREAMELEMENTS, "data": {"amount": 5}}, 422, "missing field username"),
            ({**STREAMELEMENTS, "createdAt": "last tuesday"}, 422, "not RFC 3339"),
        ],
    )
    async def test_malformed_payloads_say_what_is_wrong(
        self, client: httpx.AsyncClient, redis: Redis, make_settings, payload, status, says
    ) -> None:
        response = await post(client, payload)
        assert response.status_code == status
        assert says in response.json()["detail"]
        assert await donations(redis, make_settings) == []

    async def test_a_batch_with_one_bad_item_publishes_nothing(
        self, client: httpx.AsyncClient, redis: Redis, make_settings
    ) -> None:
        bad_item = {"_id": "sl-2", "name": "x", "amount": "1", "currency": "NOPE"}
        payload = {**STREAMLABS, "message": [*STREAMLABS["message"], bad_item]}
        assert (await post(client, payload)).status_code == 422
        assert await donations(redis, make_settings) == []

    async def test_body_that_is_not_json(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/webhooks/donations", content=b"{nope", headers={"content-type": "application/json"}
        )
        assert response.status_code == 400 and "not JSON" in response.json()["detail"]

    async def test_wrong_content_type(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/webhooks/donations",
            content=b"a=1",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 415

    async def test_oversized_body_is_refused_without_reading_it_all(
        self, client: httpx.AsyncClient, redis: Redis, make_settings
    ) -> None:
        async def endless() -> AsyncIterator[bytes]:
            for _ in range(1000):
                yield b" " * 1024

        response = await client.post(
            "/webhooks/donations", content=endless(), headers={"content-type": "application/json"}
        )
        assert response.status_code == 413
        assert await donations(redis, make_settings) == []

    async def test_unknown_channel(self, client: httpx.AsyncClient) -> None:
        response = await post(client, STREAMLABS, params={"channel": "nobody"})
        assert response.status_code == 404 and "not in CHANNELS" in response.json()["detail"]


async def test_without_a_secret_the_endpoint_says_how_to_enable_it(make_settings, redis) -> None:
    settings = make_settings(IngestSettings, ingest_sources=["webhooks"])
    async with ingest_client(settings) as client:
        response = await post(client, STREAMLABS)
    assert response.status_code == 503 and "DONATION_WEBHOOK_SECRET" in response.json()["detail"]


async def test_health_reports_redis_reachable(make_settings, redis) -> None:
    async with ingest_client(make_settings(IngestSettings, ingest_sources=["webhooks"])) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"service": "streamloop-ingest", "status": "ok", "redis": "ok"}


async def test_health_reports_redis_unreachable(make_settings) -> None:
    settings = make_settings(
        IngestSettings, ingest_sources=["webhooks"], redis_url="redis://127.0.0.1:1/0"
    )
    async with ingest_client(settings) as client:
        response = await client.get("/healthz")
    assert response.status_code == 503 and "unreachable" in response.json()["redis"]


UNREPRESENTABLE: list[Any] = [
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59Z",
    "NaN",
    "nan",
    "1e308",
    1e308,
    "9" * 3000,
    10**400,
    -5,
    "1969-12-31T23:59:59Z",
    "2026-02-30T10:00:00Z",
    "x" * 3000,
]


def streamlabs_at(created_at: Any, donation_id: str = "sl-time") -> dict[str, Any]:
    """The Streamlabs payload with its donation dated ``created_at``."""
    item = STREAMLABS["message"][0] | {"_id": donation_id, "created_at": created_at}
    return STREAMLABS | {"message": [item]}


class TestTimePolicy:
    """``created_at`` is parsed safely; too far ahead is refused; late money counts on arrival."""

    async def test_a_donation_dated_in_the_skew_is_kept_at_its_own_time(
        self, client: httpx.AsyncClient, redis: Redis, make_settings
    ) -> None:
        sent = utc_now().replace(microsecond=0) - timedelta(seconds=60)
        response = await post(client, streamlabs_at(format_ts(sent)))
        assert response.status_code == 202, response.text
        [entry] = await donations(redis, make_settings)
        assert parse_ts(entry["ts"]) == sent

    async def test_a_donation_dated_past_the_skew_ahead_is_refused_with_the_reason(
        self, client: httpx.AsyncClient, redis: Redis, make_settings
    ) -> None:
        ahead = format_ts(utc_now() + timedelta(seconds=3600))
        response = await post(client, streamlabs_at(ahead))
        assert response.status_code == 422
        assert "ahead of this server's clock" in response.json()["detail"]
        assert "MAX_CLOCK_SKEW_S allows 300 s" in response.json()["detail"]
        assert await donations(redis, make_settings) == []
        within = format_ts(utc_now() + timedelta(seconds=200))
        assert (await post(client, streamlabs_at(within, "sl-soon"))).status_code == 202
        record(
            "future-donation",
            "a signed donation dated an hour ahead of the wall clock (and one 200 s ahead)",
            2,
            "the hour-ahead one refused with 422 and the reason (MAX_CLOCK_SKEW_S 300 s), "
            "nothing published, the channel clock untouched; the 200 s one published",
            lost=0,
            doubled=0,
        )

    async def test_a_late_donation_counts_at_its_arrival_time(
        self, client: httpx.AsyncClient, redis: Redis, make_settings
    ) -> None:
        before = utc_now() - timedelta(milliseconds=1)
        response = await post(client, streamlabs_at("2026-02-27T10:30:00Z"))
        assert response.status_code == 202, response.text
        [entry] = await donations(redis, make_settings)
        assert before <= parse_ts(entry["ts"]) <= utc_now()
        assert entry["amount"] == "10.80", "the money itself is untouched"
        record(
            "late-donation",
            "a signed donation whose created_at is nine months old",
            1,
            "published, dated at its arrival (counts toward today and the current stream), "
            "amount untouched",
            lost=0,
            doubled=0,
        )

    async def test_every_unrepresentable_created_at_is_a_422_naming_it(
        self, client: httpx.AsyncClient, redis: Redis, make_settings
    ) -> None:
        statuses = []
        for created_at in UNREPRESENTABLE:
            body = json.dumps(streamlabs_at(created_at)).encode()
            response = await client.post(
                "/webhooks/donations", content=body, headers={"content-type": "application/json"}
            )
            statuses.append(response.status_code)
            assert response.status_code == 422, (created_at, response.text)
            assert "created_at" in response.json()["detail"]
        assert await donations(redis, make_settings) == []
        record(
            "unrepresentable-timestamps",
            "signed donations whose created_at cannot be an event time (year 0001 with an "
            "offset, 9999, NaN, 1e308, 3,000 digits, before 1970, 30 February, junk)",
            len(UNREPRESENTABLE),
            "each refused with 422 naming created_at and why; nothing published; no 5xx",
            lost=0,
            doubled=0,
            statuses=sorted(set(statuses)),
        )
