"""The time policy (``shared.clock``): every timestamp parses to an event time or a clear error.

Property tests over the whole range ``datetime`` can hold, any UTC offset, epoch
numbers of any size, and arbitrary text: the only exception ever raised is
``TimestampError`` (a ``ValueError``), and through the event models a
``pydantic.ValidationError``, never an ``OverflowError`` or anything else.
"""

from __future__ import annotations

import contextlib
import math
from datetime import UTC, datetime, timedelta, timezone

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.clock import (
    EARLIEST_TS,
    LATEST_TS,
    FutureTimestampError,
    TimestampError,
    from_epoch_s,
    parse_ts,
    refuse_future,
)
from shared.events import (
    ChatEvent,
    DonationEvent,
    counted_on_arrival,
    parse_fields,
    refuse_future_events,
)

OFFSETS = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
ANY_MOMENT = st.datetimes(min_value=datetime.min, max_value=datetime.max, timezones=OFFSETS)
EPOCHS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**30),
)


def chat_at(ts: object) -> dict[str, object]:
    return {"v": "1", "type": "chat", "id": "p1", "channel": "demo", "ts": ts,
            "source": "sim", "user": "u", "text": "hi"}  # fmt: skip


class TestParsing:
    @given(ANY_MOMENT)
    def test_any_datetime_with_any_offset_parses_or_is_a_timestamp_error(
        self, moment: datetime
    ) -> None:
        try:
            parsed = parse_ts(moment.isoformat())
        except TimestampError:
            in_range = False
            with contextlib.suppress(OverflowError):
                in_range = EARLIEST_TS <= moment.astimezone(UTC) < LATEST_TS
            assert not in_range, f"{moment.isoformat()} is an event time but was refused"
            return
        assert parsed == moment and parsed.tzinfo is UTC
        assert EARLIEST_TS <= parsed < LATEST_TS

    @given(st.text(max_size=80))
    def test_arbitrary_text_parses_or_is_a_timestamp_error(self, text: str) -> None:
        try:
            parsed = parse_ts(text)
        except TimestampError:
            return
        assert EARLIEST_TS <= parsed < LATEST_TS

    @given(EPOCHS)
    def test_epoch_seconds_of_any_size_parse_or_are_a_timestamp_error(
        self, seconds: float | int
    ) -> None:
        try:
            parsed = from_epoch_s(seconds)
        except TimestampError:
            finite = not isinstance(seconds, float) or math.isfinite(seconds)
            assert not (finite and 0 <= seconds < LATEST_TS.timestamp())
            return
        assert EARLIEST_TS <= parsed < LATEST_TS

    @given(st.one_of(ANY_MOMENT.map(datetime.isoformat), st.text(max_size=80), EPOCHS))
    def test_a_stream_entry_with_any_ts_parses_or_is_a_validation_error(self, ts: object) -> None:
        try:
            event = parse_fields(chat_at(str(ts)))
        except pydantic.ValidationError:
            return
        assert EARLIEST_TS <= event.ts < LATEST_TS

    def test_the_entry_from_the_issue_is_a_validation_error_naming_ts(self) -> None:
        with pytest.raises(pydantic.ValidationError) as caught:
            parse_fields(chat_at("0001-01-01T00:00:00+01:00"))
        assert "has no UTC equivalent" in str(caught.value)


class TestSkew:
    @given(st.floats(min_value=-1e6, max_value=1e6))
    def test_only_moments_past_the_skew_ahead_are_refused(self, ahead_s: float) -> None:
        now = datetime(2026, 2, 27, 10, tzinfo=UTC)
        moment = now + timedelta(seconds=ahead_s)
        if ahead_s > 300:
            with pytest.raises(FutureTimestampError, match="MAX_CLOCK_SKEW_S allows 300 s"):
                refuse_future(moment, 300, now)
        else:
            refuse_future(moment, 300, now)

    def test_a_late_donation_counts_at_arrival_and_a_recent_one_keeps_its_time(self) -> None:
        now = datetime(2026, 2, 27, 10, tzinfo=UTC)
        old = DonationEvent(id="d", channel="demo", ts=now - timedelta(days=3),
                            source="streamlabs", user="u", amount="5")  # fmt: skip
        recent = old.model_copy(update={"ts": now - timedelta(seconds=299)})
        assert counted_on_arrival(old, 300, now).ts == now
        assert counted_on_arrival(old, 300, now).amount == old.amount
        assert counted_on_arrival(recent, 300, now) is recent

    def test_simulated_events_may_run_ahead(self) -> None:
        now = datetime(2026, 2, 27, 10, tzinfo=UTC)
        ahead = now + timedelta(hours=5)
        sim = ChatEvent(id="c", channel="demo", ts=ahead, source="sim", user="u", text="")
        refuse_future_events([sim], 300, now)
        live = sim.model_copy(update={"source": "twitch"})
        with pytest.raises(FutureTimestampError, match="chat c"):
            refuse_future_events([live], 300, now)
