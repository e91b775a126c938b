"""Values out of range at the webhooks: refused with a 4xx and a reason, never a 5xx.

Amounts past any real tip or below a cent, times no datetime can hold, JSON
nested tens of thousands deep, and notifications for channels this deployment
does not serve, against the real ingest app (lifespan entered) on a real Redis.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from services.ingest.settings import IngestSettings
from shared.money import to_cents
from tests.hostile.strategies import AMOUNTS, NESTING_DEPTHS, nested_json
from tests.hostile.test_webhooks import DONATION_SECRET, HYPOTHESIS, TWITCH_SECRET, App
from tests.ingest.twitch_payloads import example_event, webhook_body, webhook_headers
from tests.ingest.twitch_state import BROADCASTER_LOGIN

TOO_DEEP = 30_000
FIVE_THOUSAND_DIGITS = "9" * 5_000
ABSURD_AMOUNTS = [
    "1e30",
    '"1E+27"',
    "1e308",
    '"1e308"',
    FIVE_THOUSAND_DIGITS,
    f'"{FIVE_THOUSAND_DIGITS}"',
    "NaN",
    "Infinity",
    "-Infinity",
    '"NaN"',
    '"inf"',
    "0.001",
    '"0.004"',
    "1e-30",
    "0",
    "-5",
    '"1000000.01"',
    "[1]",
    '{"value": 10}',
    "true",
]
"""Raw JSON for a Streamlabs ``amount`` that must be refused (``USD``)."""
UNREPRESENTABLE_TIMES = [
    "100000000000000000000",
    "-100000000000000000000",
    "1e300",
    "NaN",
    FIVE_THOUSAND_DIGITS,
    '"0001-01-01T00:00:00+01:00"',
    '"9999-12-31T23:59:59-01:00"',
    f'"{FIVE_THOUSAND_DIGITS}"',
    "[[[]]]",
]
"""Raw JSON for a Streamlabs ``created_at`` no datetime can hold."""
OVERFLOWING_HEADER_TIMES = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]


@pytest.fixture
def edge(runner: asyncio.Runner, make_settings: Any, hostile_cleanup: None) -> Iterator[App]:
    settings = make_settings(
        IngestSettings,
        ingest_sources=["webhooks"],
        channels=["demo", BROADCASTER_LOGIN],
        donation_webhook_secret=DONATION_SECRET,
        twitch_webhook_secret=TWITCH_SECRET,
    )
    running = App(runner, settings)
    yield running
    running.close()


def streamlabs(amount: str = '"10.00"', created_at: str = "null", currency: str = "USD") -> bytes:
    """A Streamlabs donation body with raw JSON spliced in for ``amount`` and ``created_at``."""
    item = (
        f'{{"_id": "{uuid.uuid4()}", "name": "viewer", "amount": {amount}, '
        f'"currency": "{currency}", "message": "hi", "created_at": {created_at}}}'
    )
    return f'{{"type": "donation", "message": [{item}]}}'.encode()


def donate(app: App, body: bytes) -> tuple[httpx.Response, int]:
    headers = {"content-type": "application/json", "authorization": f"Bearer {DONATION_SECRET}"}
    return app.post("/webhooks/donations", content=body, headers=headers)


def twitch(app: App, body: bytes, **header_overrides: str) -> tuple[httpx.Response, int]:
    headers = webhook_headers(TWITCH_SECRET, body) | header_overrides
    return app.post("/webhooks/twitch", content=body, headers=headers)


nested = nested_json


def refused_with_reason(response: httpx.Response, published: int) -> bool:
    return 400 <= response.status_code < 500 and bool(response.json()["detail"]) and not published


# ---------------------------------------------------------------- amounts


@pytest.mark.parametrize("amount", ABSURD_AMOUNTS, ids=lambda raw: raw[:12])
def test_absurd_and_sub_cent_donation_amounts_are_refused_with_a_reason(
    edge: App, amount: str
) -> None:
    response, published = donate(edge, streamlabs(amount))
    assert refused_with_reason(response, published), response.text


def test_an_amount_worth_less_than_a_cent_after_conversion_is_refused(edge: App) -> None:
    response, published = donate(edge, streamlabs('"1"', currency="IDR"))  # 0.000063 USD
    assert refused_with_reason(response, published)
    assert "less than one cent" in response.json()["detail"]


@HYPOTHESIS
@given(amount=AMOUNTS, as_text=st.booleans())
def test_any_amount_is_published_to_the_cent_or_refused_with_a_4xx(
    edge: App, amount: Decimal | float | int, as_text: bool
) -> None:
    raw = json.dumps(str(amount)) if as_text else str(amount)
    if isinstance(amount, float | Decimal) and not Decimal(amount).is_finite() and not as_text:
        raw = {"nan": "NaN", "snan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}.get(
            str(amount).lower(), "NaN"
        )
    response, published = donate(edge, streamlabs(raw))

    assert response.status_code < 500, response.text
    expected = expected_usd(as_parsed(raw))
    if expected is None:
        assert refused_with_reason(response, published), (raw, response.text)
    else:
        assert response.status_code == 202 and published == 1, (raw, response.text)
        last = edge.runner.run(
            edge.redis.xrevrange(edge.settings.keys.channel_stream("donation", "demo"), count=1)
        )
        assert last[0][1]["amount"] == f"{expected:.2f}"


def as_parsed(raw: str) -> str:
    """The amount as the webhook's JSON parser hands it over (a JSON number is a float)."""
    try:
        return str(json.loads(raw))
    except ValueError:
        return "not JSON"


def expected_usd(text: str) -> Decimal | None:
    """What a USD amount written as ``text`` must publish as, or None when it must be refused."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    if not value.is_finite() or value <= 0 or value > 10**12:
        return None
    cents = to_cents(value)
    return cents if Decimal("0.01") <= cents <= 1_000_000 else None


# ---------------------------------------------------------------- times


@pytest.mark.parametrize("created_at", UNREPRESENTABLE_TIMES, ids=lambda raw: raw[:14])
def test_a_donation_time_no_datetime_can_hold_is_refused(edge: App, created_at: str) -> None:
    response, published = donate(edge, streamlabs(created_at=created_at))
    assert refused_with_reason(response, published), response.text


@pytest.mark.parametrize("timestamp", OVERFLOWING_HEADER_TIMES)
def test_an_overflowing_twitch_message_timestamp_is_refused_before_the_signature(
    edge: App, timestamp: str
) -> None:
    body = json.dumps(webhook_body("channel.cheer", example_event("channel.cheer"))).encode()
    response, published = twitch(
        edge, body, **{"Twitch-Eventsub-Message-Timestamp": timestamp}
    )  # the signature no longer matches: the timestamp is checked first
    assert response.status_code == 403 and published == 0
    assert "Timestamp" in response.json()["detail"]


@pytest.mark.parametrize("followed_at", OVERFLOWING_HEADER_TIMES)
def test_a_signed_follow_with_an_overflowing_time_is_a_400(edge: App, followed_at: str) -> None:
    event = example_event("channel.follow", followed_at=followed_at)
    body = json.dumps(webhook_body("channel.follow", event)).encode()
    response, published = twitch(edge, body)
    assert response.status_code == 400 and published == 0
    assert "followed_at" in response.json()["detail"]


# ---------------------------------------------------------------- nesting


def test_a_30000_deep_array_is_a_400_at_both_webhooks(edge: App) -> None:
    body = nested(TOO_DEEP).encode()
    for response, published in (donate(edge, body), twitch(edge, body)):
        assert response.status_code == 400 and published == 0
        assert "nested too deeply" in response.json()["detail"]


@HYPOTHESIS
@given(
    depth=NESTING_DEPTHS,
    where=st.sampled_from(["body", "amount", "created_at", "message", "name", "currency"]),
)
def test_any_nesting_depth_anywhere_is_answered_without_a_5xx(
    edge: App, depth: int, where: str
) -> None:
    value = nested(depth)
    if where == "body":
        body = value.encode()
    else:
        item = {"_id": str(uuid.uuid4()), "name": "v", "amount": "5", "currency": "USD"}
        text = json.dumps({"type": "donation", "message": [item | {where: "@@"}]})
        body = text.replace('"@@"', value).encode()
    response, published = donate(edge, body)
    assert refused_with_reason(response, published), response.text
    response, published = twitch(edge, body)
    assert refused_with_reason(response, published), response.text


# ---------------------------------------------------------------- channels


def test_a_signed_cheer_for_a_channel_not_served_is_dropped_and_counted(edge: App) -> None:
    before = unknown_channel_total()
    event = example_event("channel.cheer", broadcaster_user_login="stranger")
    body = json.dumps(webhook_body("channel.cheer", event)).encode()
    response, published = twitch(edge, body)
    assert response.status_code == 204 and published == 0
    assert unknown_channel_total() == before + 1


def unknown_channel_total() -> float:
    value = REGISTRY.get_sample_value(
        "streamloop_ingest_unknown_channel_total", {"type": "channel.cheer"}
    )
    return value or 0.0
