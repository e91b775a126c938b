"""Event time: RFC 3339 UTC timestamps with a ``Z`` suffix.

Every consumer measures time by the events' ``ts``, never by the wall clock, so a
simulated stream at N x speed or a replay looks to them like a live one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECOND = timedelta(milliseconds=1)


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
    """``moment`` converted to UTC; naive datetimes are refused rather than guessed."""
    if moment.tzinfo is None:
        raise ValueError("timestamp has no timezone: use RFC 3339 with Z or an offset")
    return moment.astimezone(UTC)


def to_millis(moment: datetime) -> datetime:
    """``moment`` in UTC, truncated to whole milliseconds (the precision of ``ts``)."""
    moment = as_utc(moment)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def parse_ts(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (``Z`` or an offset) into aware UTC."""
    return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
