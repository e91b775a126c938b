"""The event contract: every type round-trips through flat string fields, bad input is named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pydantic
import pytest

from shared.clock import format_ts, parse_ts
from shared.events import (
    ActivityChangedEvent,
    BitsEvent,
    ChatEvent,
    DonationEvent,
    FollowEvent,
    RaidEvent,
    StreamEndedEvent,
    StreamStartedEvent,
    SubEvent,
    ViewerCountEvent,
    describe_validation_error,
    flat_fields,
    parse_fields,
    to_fields,
)
from shared.keys import Stream

TS = datetime(2026, 2, 27, 10, 30, 0, 123456, tzinfo=UTC)
COMMON = {"id": "e1", "channel": "demo", "ts": TS, "source": "twitch"}
EXAMPLES = [
    (ChatEvent(**COMMON, user="viewer1", text="hello"), Stream.CHAT),
    (DonationEvent(**COMMON, user="v", amount="10", currency="eur", message="gg"), Stream.DONATION),
    (BitsEvent(**COMMON, user="v", bits=250), Stream.DONATION),
    (SubEvent(**COMMON, type="gift", user="v", tier="2000", count=5, amount="25"), Stream.SUB),
    (ViewerCountEvent(**COMMON, count=42), Stream.VIEWERS),
    (StreamStartedEvent(**COMMON, stream_id="s1"), Stream.LIFECYCLE),
    (StreamEndedEvent(**COMMON, stream_id="s1"), Stream.LIFECYCLE),
    (
        ActivityChangedEvent(
            **COMMON,
            stream_id="s1",
            activity="q_and_a",
            previous="talk",
            reason="chat asks",
            decided_by="bandit",
        ),
        Stream.LIFECYCLE,
    ),
    (FollowEvent(**COMMON, stream_id="s1", user="v"), Stream.LIFECYCLE),
    (RaidEvent(**COMMON, stream_id="s1", user="raider", count=120), Stream.LIFECYCLE),
]


@pytest.mark.parametrize(("event", "stream"), EXAMPLES, ids=lambda x: getattr(x, "type", ""))
class TestRoundTrip:
    def test_fields_are_flat_strings_that_parse_back_to_the_same_event(self, event, stream) -> None:
        fields = to_fields(event)
        assert all(isinstance(v, str) for v in fields.values())
        assert fields["v"] == "1" and fields["ts"] == "2026-02-27T10:30:00.123Z"
        assert parse_fields(fields) == event
        assert event.stream is stream

    def test_fast_flat_fields_equal_the_model_dump(self, event, stream) -> None:
        assert flat_fields(event) == [x for pair in to_fields(event).items() for x in pair]


class TestMoney:
    def test_bits_amount_is_one_cent_a_bit(self) -> None:
        assert to_fields(BitsEvent(**COMMON, user="v", bits=250))["amount"] == "2.50"

    def test_bits_amount_that_disagrees_with_bits_is_refused(self) -> None:
        with pytest.raises(pydantic.ValidationError, match=r"does not equal bits x 0\.01"):
            BitsEvent(**COMMON, user="v", bits=100, amount="5.00")

    def test_amounts_are_rounded_to_cents_and_currency_upper_cased(self) -> None:
        fields = to_fields(DonationEvent(**COMMON, user="v", amount="3.456", currency="gbp"))
        assert (fields["amount"], fields["currency"]) == ("3.46", "GBP")

    @pytest.mark.parametrize("amount", ["-1", "NaN", "Infinity", "1e9", "ten"])
    def test_impossible_amounts_are_refused(self, amount: str) -> None:
        with pytest.raises(pydantic.ValidationError):
            DonationEvent(**COMMON, user="v", amount=amount)


class TestRejection:
    def base(self, **changes: str) -> dict[str, str]:
        return {**to_fields(ChatEvent(**COMMON, user="u", text="t")), **changes}

    @pytest.mark.parametrize(
        ("changes", "says"),
        [
            ({"type": "dance"}, "does not match any of the expected tags"),
            ({"v": "2"}, "v: Input should be 1"),
            ({"ts": "2026-02-27 10:30"}, "ts: Value error, timestamp has no timezone"),
            ({"channel": "no spaces please"}, "channel: String should match pattern"),
            ({"source": "carrier-pigeon"}, "source: Input should be"),
            ({"text": "x" * 501}, "text: String should have at most 500 characters"),
            ({"extra": "field"}, "extra: Extra inputs are not permitted"),
        ],
    )
    def test_contract_breaks_are_named(self, changes: dict[str, str], says: str) -> None:
        with pytest.raises(pydantic.ValidationError) as caught:
            parse_fields(self.base(**changes))
        assert says in describe_validation_error(caught.value)

    def test_bytes_from_redis_are_accepted(self) -> None:
        raw = {k.encode(): v.encode() for k, v in self.base().items()}
        assert parse_fields(raw).text == "t"

    def test_channel_login_is_lower_cased(self) -> None:
        assert parse_fields(self.base(channel="DemoChan")).channel == "demochan"


class TestClock:
    def test_timestamps_are_utc_with_z_and_milliseconds_only_when_present(self) -> None:
        assert format_ts(datetime(2026, 2, 27, 10, 30, tzinfo=UTC)) == "2026-02-27T10:30:00Z"
        plus_two = timezone(timedelta(hours=2))
        assert format_ts(datetime(2026, 2, 27, 12, 30, 0, 5000, tzinfo=plus_two)) == (
            "2026-02-27T10:30:00.005Z"
        )

    def test_offsets_are_converted_to_utc(self) -> None:
        assert parse_ts("2026-02-27T12:30:00+02:00") == datetime(2026, 2, 27, 10, 30, tzinfo=UTC)
