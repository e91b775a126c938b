"""Epoch milliseconds and datetimes convert exactly, both ways (``shared.clock``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.clock import epoch_ms, from_epoch_ms, to_millis


def test_a_known_moment_is_its_epoch_milliseconds() -> None:
    moment = datetime(2026, 2, 27, 10, 30, 0, 123_000, tzinfo=UTC)
    assert epoch_ms(moment) == 1_772_188_200_123
    assert from_epoch_ms(1_772_188_200_123) == moment


def test_an_offset_is_converted_to_utc_first() -> None:
    east = datetime(2026, 2, 27, 11, 30, tzinfo=timezone(timedelta(hours=1)))
    assert epoch_ms(east) == epoch_ms(datetime(2026, 2, 27, 10, 30, tzinfo=UTC))


def test_sub_millisecond_parts_are_dropped_not_rounded() -> None:
    moment = datetime(2026, 2, 27, 10, 30, 0, 999_999, tzinfo=UTC)
    assert epoch_ms(moment) == epoch_ms(moment.replace(microsecond=999_000))


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="no timezone"):
        epoch_ms(datetime(2026, 2, 27, 10, 30))


@given(st.datetimes(timezones=st.just(UTC)))
def test_every_millisecond_moment_round_trips(moment: datetime) -> None:
    exact = to_millis(moment)
    assert from_epoch_ms(epoch_ms(exact)) == exact
    assert from_epoch_ms(epoch_ms(moment)) == exact
