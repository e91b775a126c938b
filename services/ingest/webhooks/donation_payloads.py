"""Streamlabs- and StreamElements-shaped donation payloads, normalised to ``donation`` events.

Accepted shapes (what each platform's socket API emits, as a relay forwards it):

* Streamlabs: ``{"type": "donation", "message": [{"_id", "name", "amount",
  "currency", "message", "created_at"?}, ...]}``; one event per item.
* StreamElements: ``{"_id", "type": "tip", "data": {"tipId"?, "username",
  "amount", "currency", "message"}, "createdAt"?}``.

Amounts are converted to USD with the ``FX_RATES_USD`` table; ``currency`` keeps
the original code. Nothing in a payload is trusted: an amount that is not a plain
positive number below :data:`MAX_AMOUNT` (in its own currency), that is worth less
than one cent once converted, or a time that cannot be represented is a
:class:`DonationPayloadError` naming the field, never an exception that escapes
(the webhook answers 422).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from shared.clock import TimestampError, from_epoch_s, parse_ts, utc_now
from shared.events import DonationEvent
from shared.money import CENT, to_usd

MAX_AMOUNT = Decimal(10**12)
"""Largest amount taken in any currency (before conversion): far above any real tip,
small enough that converting it never overflows the decimal context. The USD value
is bounded again by the ``donation`` model (at most 1,000,000)."""
MAX_AMOUNT_CHARS = 64
"""Longest amount text read: more digits than that is not a sum of money."""


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
    currency = _currency(item.get("currency", "USD"))
    return DonationEvent(
        id=_required(item, "_id", "id"),
        channel=channel,
        ts=_moment(item.get("created_at")),
        source="streamlabs",
        user=_required(item, "name", "from"),
        amount=_usd(item.get("amount"), currency, rates),
        currency=currency,
        message=_message(item.get("message")),
    )


def _streamelements(
    payload: dict[str, Any], channel: str, rates: Mapping[str, Decimal]
) -> DonationEvent:
    data = payload["data"]
    currency = _currency(data.get("currency", "USD"))
    return DonationEvent(
        id=_required(data, "tipId", "_id") if data.get("tipId") else _required(payload, "_id"),
        channel=channel,
        ts=_moment(payload.get("createdAt")),
        source="streamelements",
        user=_required(data, "username", "displayName"),
        amount=_usd(data.get("amount"), currency, rates),
        currency=currency,
        message=_message(data.get("message")),
    )


def _required(item: Mapping[str, Any], *names: str) -> str:
    for name in names:
        value = item.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
            return _int_text(value) if isinstance(value, int) else value
        if value not in (None, ""):
            raise DonationPayloadError(f"{name} must be text, got {_shown(value)}")
    raise DonationPayloadError(f"missing field {' or '.join(names)!s}")


def _usd(raw: Any, currency: str, rates: Mapping[str, Decimal]) -> Decimal:
    """``raw`` in ``currency`` as USD cents; refused when it is worth less than a cent."""
    usd = to_usd(_amount(raw), currency, rates)
    if usd < CENT:
        raise DonationPayloadError(
            f"amount {_shown(raw)} {currency} is worth less than one cent (USD {usd:.2f}): "
            "not a donation"
        )
    return usd


def _amount(raw: Any) -> Decimal:
    if isinstance(raw, int) and not isinstance(raw, bool) and raw.bit_length() > 64:
        raise DonationPayloadError(f"amount {_shown(raw)} is over {MAX_AMOUNT:,}: not a donation")
    text = str(raw).replace(",", "").lstrip("$") if isinstance(raw, str | int | float) else ""
    if not text or isinstance(raw, bool) or len(text) > MAX_AMOUNT_CHARS:
        raise DonationPayloadError(f"amount {_shown(raw)} is not a number")
    try:
        amount = Decimal(text)
    except InvalidOperation as error:
        raise DonationPayloadError(f"amount {_shown(raw)} is not a number") from error
    if not amount.is_finite() or amount <= 0:
        raise DonationPayloadError(f"amount {_shown(raw)} must be a positive number")
    if amount > MAX_AMOUNT:
        raise DonationPayloadError(f"amount {_shown(raw)} is over {MAX_AMOUNT:,}: not a donation")
    return amount


def _currency(raw: Any) -> str:
    if not isinstance(raw, str):
        raise DonationPayloadError(f"currency must be a code such as USD, got {_shown(raw)}")
    return raw


def _message(raw: Any) -> str:
    if raw is None or isinstance(raw, str | int | float):
        return str(raw or "")
    raise DonationPayloadError(f"message must be text, got {type(raw).__name__}")


def _moment(raw: Any) -> datetime:
    """The payload's own time (epoch seconds or RFC 3339), else now.

    A time no datetime can hold (a 20-digit epoch, NaN, year 0) is refused, not raised.
    """
    if raw in (None, ""):
        return utc_now()
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise DonationPayloadError(
            f"created_at: timestamp {_shown(raw)} is not RFC 3339 or epoch seconds"
        )
    try:
        if isinstance(raw, int | float) or raw.isdigit():
            return from_epoch_s(raw)
        return parse_ts(raw)
    except TimestampError as error:
        raise DonationPayloadError(f"created_at: {error}") from error


def _shown(raw: Any, limit: int = 40) -> str:
    """``raw`` for an error message, cut short (a 5,000-digit number is not repeated)."""
    if not isinstance(raw, str | int | float) or isinstance(raw, bool):
        return f"of type {type(raw).__name__}"
    text = _int_text(raw) if isinstance(raw, int) else str(raw)
    return repr(text) if len(text) <= limit else repr(f"{text[: limit - 3]}...")


def _int_text(value: int) -> str:
    try:
        return str(value)
    except ValueError:  # over Python's int-to-text digit limit
        return f"a {value.bit_length()}-bit integer"
