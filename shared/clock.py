"""Event time: RFC 3339 UTC timestamps with a ``Z`` suffix, parsed safely, checked against skew.

Every consumer measures time by the events' ``ts``, never by the wall clock, so a
simulated stream at N x speed or a replay looks to them like a live one.

The time policy, in one place:

* An event time is a moment in ``[EARLIEST_TS, LATEST_TS)``: from the Unix epoch
  (epoch milliseconds are never negative, so Redis scores and per-minute buckets
  stay ordered) to a year before the last ``datetime`` can hold (a day or an hour
  can always be added to it). Anything else (year 0001 with an offset, NaN, an
  epoch past year 9999, text that is not a time) raises :class:`TimestampError`, a
  ``ValueError``, so pydantic reports it as a validation error and every caller that
  already refuses bad values (webhooks: 4xx; consumers: dead letter) refuses it
  too, instead of an ``OverflowError`` escaping.
* A *live* event (Twitch, the webhooks) dated more than ``MAX_CLOCK_SKEW_S`` ahead
  of the wall clock is refused at ingest (:func:`refuse_future`), because a channel's
  clock follows its events and one such event would carry it into the future.
  Simulated and replayed streams may run ahead: their clock belongs to their own
  stream (see ``docs/redis-schema.md``, "Channel clock").
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECOND = timedelta(milliseconds=1)
EARLIEST_TS = EPOCH
"""The earliest event time accepted (inclusive)."""
LATEST_TS = datetime(9999, 1, 1, tzinfo=UTC)
"""The first event time refused: a year of headroom below ``datetime.max``."""
MAX_TEXT_CHARS = 64
"""Longer text is not an RFC 3339 time; refused before parsing."""


class TimestampError(ValueError):
    """A timestamp that is not a representable event time; the message says why."""


class FutureTimestampError(TimestampError):
    """A live event dated further ahead of the wall clock than the skew allowed."""


def utc_now() -> datetime:
    """The current wall-clock time, timezone-aware UTC."""
    return datetime.now(UTC)


def epoch_ms(moment: datetime) -> int:
    """``moment`` as whole epoch milliseconds (exact: integer arithmetic, no float seconds).

    Sub-millisecond parts are dropped; an event's ``ts`` has none to drop.
    """
    return (as_utc(moment) - EPOCH) // MILLISECOND


def from_epoch_ms(at_ms: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime (exact, the inverse of :func:`epoch_ms`)."""
    return EPOCH + at_ms * MILLISECOND


def format_ms(at_ms: int) -> str:
    """Epoch milliseconds as RFC 3339 UTC (exact: no float seconds on the way).

    >>> format_ms(1_772_188_200_500)
    '2026-02-27T10:30:00.500Z'
    """
    return format_ts(from_epoch_ms(at_ms))


def format_ts(moment: datetime) -> str:
    """``moment`` as RFC 3339 UTC with ``Z``; milliseconds only when non-zero.

    >>> format_ts(datetime(2026, 2, 27, 10, 30, tzinfo=UTC))
    '2026-02-27T10:30:00Z'
    """
    moment = as_utc(moment)
    if moment.microsecond < 1000:
        return moment.replace(microsecond=0, tzinfo=None).isoformat() + "Z"
    return moment.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def as_utc(moment: datetime) -> datetime:
    """``moment`` converted to UTC; naive or unrepresentable datetimes are refused.

    Raises :class:`TimestampError` for a naive datetime (rather than guessing its
    zone) and for one whose UTC form falls outside ``datetime``'s range (year 0001
    with a positive offset raises ``OverflowError`` in the standard library).
    """
    if moment.tzinfo is UTC:
        return moment  # already UTC (every parsed event's ts): nothing to convert
    if moment.tzinfo is None:
        raise TimestampError("timestamp has no timezone: use RFC 3339 with Z or an offset")
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError) as error:
        raise TimestampError(f"timestamp {moment.isoformat()} has no UTC equivalent") from error


def event_time(moment: datetime) -> datetime:
    """``moment`` in UTC if it is a usable event time (see module doc), else TimestampError."""
    moment = as_utc(moment)
    if not EARLIEST_TS <= moment < LATEST_TS:
        raise TimestampError(
            f"timestamp {moment.isoformat()} is outside the accepted range "
            f"{format_ts(EARLIEST_TS)} to {format_ts(LATEST_TS)}"
        )
    return moment


def to_millis(moment: datetime) -> datetime:
    """``moment`` in UTC, truncated to whole milliseconds (the precision of ``ts``)."""
    moment = as_utc(moment)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def event_ts(moment: datetime) -> datetime:
    """``moment`` as an event's ``ts``: an event time (or TimestampError), to the millisecond."""
    return to_millis(event_time(moment))


def parse_ts(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (``Z`` or an offset) into an aware UTC event time.

    Raises :class:`TimestampError` for anything else, never another exception.
    """
    if not isinstance(text, str) or len(text) > MAX_TEXT_CHARS:
        raise TimestampError(f"timestamp {_short(text)} is not RFC 3339")
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, OverflowError) as error:
        raise TimestampError(f"timestamp {_short(text)} is not RFC 3339") from error
    return event_time(parsed)


def from_epoch_s(seconds: float | int | str) -> datetime:
    """Epoch seconds as an aware UTC event time; NaN, infinities and out-of-range refused."""
    try:
        value = float(seconds)
    except (TypeError, ValueError, OverflowError) as error:
        raise TimestampError(f"epoch seconds {_short(seconds)} is not a number") from error
    if not math.isfinite(value):
        raise TimestampError(f"epoch seconds {_short(seconds)} is not a finite number")
    if not EARLIEST_TS.timestamp() <= value < LATEST_TS.timestamp():
        raise TimestampError(
            f"epoch seconds {_short(seconds)} is outside the accepted range "
            f"{format_ts(EARLIEST_TS)} to {format_ts(LATEST_TS)}"
        )
    return EARLIEST_TS + timedelta(seconds=value)


def refuse_future(moment: datetime, max_skew_s: float, now: datetime | None = None) -> None:
    """Raise :class:`FutureTimestampError` if ``moment`` is over ``max_skew_s`` ahead of now."""
    now = now or utc_now()
    ahead_s = (as_utc(moment) - now).total_seconds()
    if ahead_s > max_skew_s:
        raise FutureTimestampError(
            f"timestamp {format_ts(moment)} is {ahead_s:.0f} s ahead of this server's clock "
            f"({format_ts(now)}); MAX_CLOCK_SKEW_S allows {max_skew_s:g} s: fix the sender's "
            "clock or send the time the event happened"
        )


def _short(value: object, limit: int = 40) -> str:
    try:
        shown = repr(value)
    except ValueError:  # an int over Python's int-to-text digit limit
        return f"a {value.bit_length()}-bit integer" if isinstance(value, int) else "?"
    return shown if len(shown) <= limit else f"{shown[: limit - 3]}..."
