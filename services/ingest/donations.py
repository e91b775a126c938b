"""Streamlabs- and StreamElements-shaped donation payloads, normalised to ``donation`` events.

Accepted shapes (what each platform's socket API emits, as a relay forwards it):

* Streamlabs: ``{"type": "donation", "message": [{"_id", "name", "amount",
  "currency", "message", "created_at"?}, ...]}``; one event per item.
* StreamElements: ``{"_id", "type": "tip", "data": {"tipId"?, "username",
  "amount", "currency", "message"}, "createdAt"?}``.

Amounts are converted to USD with the ``FX_RATES_USD`` table; ``currency`` keeps
the original code.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from shared.clock import TimestampError, from_epoch_s, parse_ts, utc_now
from shared.events import DonationEvent
from shared.money import to_usd


class DonationPayloadError(ValueError):
    """A payload that is neither a Streamlabs donation nor a StreamElements tip."""


def parse_donations(
    payload: Any, channel: str, rates: Mapping[str, Decimal]
) -> list[DonationEvent]:
    """The donation events in ``payload`` for ``channel``; raises :class:`DonationPayloadError`."""
    if not isinstance(payload, dict):
        raise DonationPayloadError("expected a JSON object")
    if payload.get("type") == "donation" and isinstance(payload.get("message"), list):
        return [_streamlabs(item, channel, rates) for item in payload["message"]]
    if payload.get("type") == "tip" and isinstance(payload.get("data"), dict):
        return [_streamelements(payload, channel, rates)]
    raise DonationPayloadError(
        "unrecognised payload: expected a Streamlabs donation "
        '({"type": "donation", "message": [...]}) or a StreamElements tip '
        '({"type": "tip", "data": {...}})'
    )


def _streamlabs(item: Any, channel: str, rates: Mapping[str, Decimal]) -> DonationEvent:
    if not isinstance(item, dict):
        raise DonationPayloadError("Streamlabs message items must be objects")
    currency = str(item.get("currency", "USD"))
    return DonationEvent(
        id=_required(item, "_id", "id"),
        channel=channel,
        ts=_moment(item.get("created_at")),
        source="streamlabs",
        user=_required(item, "name", "from"),
        amount=to_usd(_amount(item.get("amount")), currency, rates),
        currency=currency,
        message=str(item.get("message") or ""),
    )


def _streamelements(
    payload: dict[str, Any], channel: str, rates: Mapping[str, Decimal]
) -> DonationEvent:
    data = payload["data"]
    currency = str(data.get("currency", "USD"))
    return DonationEvent(
        id=_required(data, "tipId", "_id") if data.get("tipId") else _required(payload, "_id"),
        channel=channel,
        ts=_moment(payload.get("createdAt")),
        source="streamelements",
        user=_required(data, "username", "displayName"),
        amount=to_usd(_amount(data.get("amount")), currency, rates),
        currency=currency,
        message=str(data.get("message") or ""),
    )


def _required(item: Mapping[str, Any], *names: str) -> str:
    for name in names:
        value = item.get(name)
        if value not in (None, ""):
            return str(value)
    raise DonationPayloadError(f"missing field {' or '.join(names)!s}")


def _amount(raw: Any) -> Decimal:
    try:
        amount = Decimal(str(raw).replace(",", "").lstrip("$"))
    except InvalidOperation as error:
        raise DonationPayloadError(f"amount {raw!r} is not a number") from error
    if not amount.is_finite() or amount <= 0:
        raise DonationPayloadError(f"amount {raw!r} must be a positive number")
    return amount


def _moment(raw: Any) -> datetime:
    """The payload's own time (epoch seconds or RFC 3339), else now."""
    if raw in (None, ""):
        return utc_now()
    try:
        if isinstance(raw, int | float) or str(raw).isdigit():
            return from_epoch_s(raw)
        return parse_ts(str(raw))
    except TimestampError as error:
        raise DonationPayloadError(f"created_at: {error}") from error
