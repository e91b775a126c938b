"""``POST /webhooks/donations``: Streamlabs/StreamElements donations, guarded by a shared secret."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

import pydantic
from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse

from services.ingest.settings import IngestSettings
from services.ingest.state import ingest_state
from services.ingest.webhooks.body import read_capped, require_json
from services.ingest.webhooks.donation_payloads import DonationPayloadError, parse_donations
from services.ingest.webhooks.submit import submit
from shared.events import DonationEvent, counted_on_arrival, describe_validation_error
from shared.money import CurrencyError

log = logging.getLogger("services.ingest.donations")
router = APIRouter(tags=["webhooks"])


@router.post(
    "/webhooks/donations",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Donation from Streamlabs or StreamElements",
    responses={400: {}, 401: {}, 403: {}, 408: {}, 413: {}, 415: {}, 422: {}, 503: {}},
)
async def donations(request: Request, channel: str | None = Query(default=None)) -> JSONResponse:
    """Authenticate with ``Authorization: Bearer <DONATION_WEBHOOK_SECRET>`` or
    ``X-Signature: sha256=<hex HMAC-SHA256 of the body>``, then publish each donation."""
    settings = ingest_state(request).settings
    target = _channel(settings, channel)
    require_json(request)
    body = await read_capped(
        request, settings.webhook_max_body_bytes, settings.webhook_body_timeout_s
    )
    _authenticate(request, body, settings.donation_webhook_secret.get_secret_value())
    events = _parse(body, target, settings)
    result = await submit(request, events, "donation-webhook")
    if result is None:
        log.warning("donation webhook for %s: %d held until Redis answers", target, len(events))
        counts = {"published": 0, "duplicates": 0, "held": len(events)}
    else:
        log.info(
            "donation webhook for %s: %d published, %d duplicates",
            target, result.published, len(result.duplicates),
        )  # fmt: skip
        counts = {"published": result.published, "duplicates": len(result.duplicates), "held": 0}
    return JSONResponse(counts, status_code=status.HTTP_202_ACCEPTED)


def _channel(settings: IngestSettings, requested: str | None) -> str:
    channel = (requested or settings.channels[0]).lower()
    if channel not in settings.channels:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"unknown channel {channel!r}: not in CHANNELS"
        )
    return channel


def _authenticate(request: Request, body: bytes, secret: str) -> None:
    if not secret:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "donation webhooks are disabled: set DONATION_WEBHOOK_SECRET",
        )
    bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    signature = request.headers.get("x-signature", "").removeprefix("sha256=").strip()
    if not bearer and not signature:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing credentials: send Authorization: Bearer <secret> or X-Signature",
        )
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    bearer_ok = bool(bearer) and hmac.compare_digest(bearer.encode(), secret.encode())
    signature_ok = bool(signature) and hmac.compare_digest(signature.encode(), expected.encode())
    if not (bearer_ok or signature_ok):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "bad secret or signature")


def _parse(body: bytes, channel: str, settings: IngestSettings) -> list[DonationEvent]:
    try:
        parsed = parse_donations(json.loads(body), channel, settings.fx_rates_usd)
    except RecursionError as error:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, "body is nested too deeply to be a donation"
        ) from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"body is not JSON: {error}") from error
    except (DonationPayloadError, CurrencyError) as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from error
    except pydantic.ValidationError as error:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, describe_validation_error(error)
        ) from error
    except (ValueError, ArithmeticError) as error:  # e.g. an integer over Python's digit limit
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"body is not a donation: {error}"
        ) from error
    return [_on_arrival(event, settings.max_clock_skew_s) for event in parsed]


def _on_arrival(event: DonationEvent, max_skew_s: float) -> DonationEvent:
    """A late donation counts when it arrives (``shared.events.counted_on_arrival``)."""
    counted = counted_on_arrival(event, max_skew_s)
    if counted is not event:
        log.info("donation %s dated %s counts at its arrival, %s", event.id, event.ts, counted.ts)
    return counted
