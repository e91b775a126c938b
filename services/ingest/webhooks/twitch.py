"""``POST /webhooks/twitch``: the Twitch EventSub webhook transport.

Include :data:`router` in an app whose lifespan sets its typed state
(:class:`~services.ingest.state.IngestState`): the settings, the outage buffer
events are submitted to, Redis (for the message-id markers) and the
:class:`~services.ingest.sources.eventsub.LiveStreams` tracker notifications are
mapped with (its own, or the WebSocket source's ``live`` to share one).

Every request is checked before anything is read or published, in this order:
secret configured (503), JSON content type (415), signing headers present (403),
timestamp fresh (403), body within ``WEBHOOK_MAX_BODY_BYTES`` (413) and
``WEBHOOK_BODY_TIMEOUT_S`` (408), HMAC-SHA256
signature (403), JSON body (400). Notifications are mapped by
:mod:`services.ingest.sources.eventsub` (400 with the reason when they do not fit) and
published once: Twitch redelivers with the same message id, which is remembered
in Redis for ``WEBHOOK_MAX_AGE_S`` (an older message is refused anyway) *after* the
publish, on top of the publisher's own atomic dedupe (see :func:`_publish_once`).
A notification for a channel not in ``CHANNELS`` is dropped, counted and answered 204.
While Redis is down the events are held by the outage buffer and the marker is
skipped (the publisher's dedupe, keyed on the message id, still drops a repeat).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import PlainTextResponse
from redis.asyncio import Redis

from services.ingest.settings import IngestSettings
from services.ingest.sources.eventsub import (
    EventSubPayloadError,
    Ignored,
    Notification,
    map_notification,
)
from services.ingest.state import ingest_state
from services.ingest.webhooks.body import read_capped
from services.ingest.webhooks.submit import submit
from shared.clock import parse_ts, utc_now
from shared.events import EventBase
from shared.redis_client import CONNECTION_ERRORS

log = logging.getLogger(__name__)

router = APIRouter()

MESSAGE_ID = "Twitch-Eventsub-Message-Id"
MESSAGE_TIMESTAMP = "Twitch-Eventsub-Message-Timestamp"
MESSAGE_SIGNATURE = "Twitch-Eventsub-Message-Signature"
MESSAGE_TYPE = "Twitch-Eventsub-Message-Type"


@dataclass(frozen=True)
class SignedMessage:
    """The signing headers of one webhook request."""

    message_id: str
    timestamp: str
    signature: str
    message_type: str


@router.post("/webhooks/twitch")
async def twitch_webhook(request: Request) -> Response:
    """Verify a Twitch EventSub webhook request, then answer or publish what it carries."""
    settings = ingest_state(request).settings
    secret = _secret(settings)
    _require_json(request)
    headers = _signed_headers(request)
    _require_fresh(headers.timestamp, settings.webhook_max_age_s)
    body = await read_capped(
        request, settings.webhook_max_body_bytes, settings.webhook_body_timeout_s
    )
    _require_signature(secret, headers, body)
    message = _json_object(body)
    if headers.message_type == "webhook_callback_verification":
        return _challenge(message)
    if headers.message_type == "revocation":
        _log_revocation(message)
        return Response(status_code=204)
    if headers.message_type == "notification":
        return await _notification(request, headers, message)
    raise _refuse(400, f"unknown {MESSAGE_TYPE} {headers.message_type!r}")


def _secret(settings: IngestSettings) -> bytes:
    secret = settings.twitch_webhook_secret.get_secret_value()
    if not secret:
        raise _refuse(503, "Twitch webhooks are off: set TWITCH_WEBHOOK_SECRET")
    return secret.encode()


def _require_json(request: Request) -> None:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise _refuse(415, f"content type must be application/json, got {media_type or 'none'}")


def _signed_headers(request: Request) -> SignedMessage:
    names = (MESSAGE_ID, MESSAGE_TIMESTAMP, MESSAGE_SIGNATURE, MESSAGE_TYPE)
    missing = [name for name in names if not request.headers.get(name)]
    if missing:
        raise _refuse(403, f"missing {', '.join(missing)}")
    return SignedMessage(*(request.headers[name] for name in names))


def _require_fresh(timestamp: str, max_age_s: int) -> None:
    try:
        sent_at = parse_ts(timestamp)
        age_s = (utc_now() - sent_at).total_seconds()
    except (ValueError, OverflowError) as error:  # a year 0 or 10000 overflows on the way
        raise _refuse(403, f"{MESSAGE_TIMESTAMP} is not a representable RFC 3339 time") from error
    if abs(age_s) >= max_age_s:
        raise _refuse(403, f"message timestamp is {age_s:.0f} s off; the limit is {max_age_s} s")


def _require_signature(secret: bytes, headers: SignedMessage, body: bytes) -> None:
    signed = headers.message_id.encode() + headers.timestamp.encode() + body
    expected = "sha256=" + hmac.new(secret, signed, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), headers.signature.encode()):
        raise _refuse(403, f"{MESSAGE_SIGNATURE} does not match")


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body)
    except RecursionError as error:
        raise _refuse(400, "body is nested too deeply to be an EventSub message") from error
    except ValueError as error:
        raise _refuse(400, f"body is not JSON: {error}") from error
    if not isinstance(message, dict):
        raise _refuse(400, "body must be a JSON object")
    return message


def _challenge(message: dict[str, Any]) -> Response:
    challenge = message.get("challenge")
    if not isinstance(challenge, str) or not challenge:
        raise _refuse(400, "webhook_callback_verification without a challenge")
    log.info("answered the Twitch webhook verification for %s", _subscription_type(message))
    return PlainTextResponse(challenge, status_code=200)


def _log_revocation(message: dict[str, Any]) -> None:
    subscription = message.get("subscription")
    status = subscription.get("status") if isinstance(subscription, dict) else None
    log.warning(
        "Twitch revoked the webhook subscription to %s (%s); its events stop arriving",
        _subscription_type(message),
        status or "no reason given",
    )


async def _notification(
    request: Request, headers: SignedMessage, message: dict[str, Any]
) -> Response:
    state = ingest_state(request)
    try:
        notification = Notification.from_payload(headers.message_id, headers.timestamp, message)
        result = map_notification(notification, state.settings, state.twitch_live_streams)
    except (EventSubPayloadError, ValueError, ArithmeticError, RecursionError) as error:
        # EventSubPayloadError names the field; anything else a value raised on the way
        # (an overflowing time, a number past Python's digit limit) is the payload's fault too.
        raise _refuse(400, str(error) or type(error).__name__) from error
    if isinstance(result, Ignored):
        log.info("ignored %s webhook: %s", notification.subscription_type, result.reason)
    else:
        await _publish_once(request, headers.message_id, result)
    return Response(status_code=204)


async def _publish_once(request: Request, message_id: str, event: EventBase) -> None:
    """Publish ``event`` unless its message id was handled before (Twitch redelivers).

    Publish, then remember: the marker is written only after the publisher has the
    event on its stream (or has dropped it as a duplicate), so an ingest killed
    between the two leaves no marker and Twitch's retry publishes it (the
    publisher's atomic ``source`` + ``id`` dedupe drops it if it had landed). A
    marker set first would answer that retry 204 and lose the event.
    """
    state = ingest_state(request)
    settings, redis = state.settings, state.redis
    marker = settings.keys.twitch_webhook_message(message_id)
    if await _handled_before(redis, marker):
        log.info("ignored redelivered Twitch webhook message %s", message_id)
        return
    result = await submit(request, [event], "twitch-webhook")
    if result is not None:  # None: held until Redis answers; the publisher's dedupe covers it
        await _remember(redis, marker, settings.webhook_max_age_s)
    state.twitch_live_streams.observe(event)


async def _handled_before(redis: Redis, marker: str) -> bool:
    """Whether this message id was published before; assumed not while Redis is unreachable."""
    try:
        return bool(await redis.exists(marker))
    except CONNECTION_ERRORS:
        return False


async def _remember(redis: Redis, marker: str, ttl_s: int) -> None:
    """Mark the message id handled for ``ttl_s`` (an older message is refused anyway)."""
    with contextlib.suppress(*CONNECTION_ERRORS):
        await redis.set(marker, "1", ex=ttl_s)


def _subscription_type(message: dict[str, Any]) -> str:
    subscription = message.get("subscription")
    kind = subscription.get("type") if isinstance(subscription, dict) else None
    return kind if isinstance(kind, str) else "an unknown type"


def _refuse(status: int, reason: str) -> HTTPException:
    log.warning("refused a Twitch webhook request (%d): %s", status, reason)
    return HTTPException(status_code=status, detail=reason)
