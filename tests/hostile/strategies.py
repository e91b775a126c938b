"""Hypothesis strategies for valid events of every type, and junk stream entries."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from shared.events import (
    ActivityChangedEvent,
    BitsEvent,
    ChatEvent,
    DonationEvent,
    EventBase,
    FollowEvent,
    RaidEvent,
    StreamEndedEvent,
    StreamStartedEvent,
    SubEvent,
    ViewerCountEvent,
)

PRINTABLE = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)
CHANNELS = st.from_regex(r"^[a-z0-9_]{1,25}$", fullmatch=True)
USERS = st.text(min_size=1, max_size=100)
TIMES = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
SOURCES = st.sampled_from(["twitch", "sim", "replay", "webhook", "streamlabs", "streamelements"])
USD = st.integers(min_value=0, max_value=100_000_000).map(lambda cents: Decimal(cents) / 100)
ACTIVITY = st.from_regex(r"^[a-z0-9_]{1,64}$", fullmatch=True)


def _base() -> dict[str, Any]:
    return {"id": PRINTABLE, "channel": CHANNELS, "ts": TIMES, "source": SOURCES}


def _build(model: type[EventBase], **fields: Any) -> st.SearchStrategy[EventBase]:
    return st.builds(model, **_base(), **fields)


EVENT_STRATEGIES: list[st.SearchStrategy[EventBase]] = [
    _build(ChatEvent, user=USERS, text=st.text(max_size=500)),
    _build(
        DonationEvent,
        user=USERS,
        amount=USD,
        currency=st.sampled_from(["USD", "EUR", "GBP"]),
        message=st.text(max_size=1000),
    ),
    _build(BitsEvent, user=USERS, bits=st.integers(1, 10_000_000), message=st.text(max_size=50)),
    _build(
        SubEvent,
        type=st.sampled_from(["sub", "resub", "gift"]),
        user=USERS,
        tier=st.sampled_from(["1000", "2000", "3000"]),
        months=st.integers(0, 1000),
        count=st.integers(1, 1000),
        amount=USD,
    ),
    _build(ViewerCountEvent, count=st.integers(0, 100_000_000)),
    _build(StreamStartedEvent, stream_id=PRINTABLE),
    _build(StreamEndedEvent, stream_id=PRINTABLE),
    _build(
        ActivityChangedEvent,
        stream_id=PRINTABLE,
        activity=ACTIVITY,
        previous=st.one_of(st.just(""), ACTIVITY),
        reason=st.text(max_size=100),
        decided_by=st.text(max_size=64),
    ),
    _build(FollowEvent, stream_id=PRINTABLE, user=USERS),
    _build(RaidEvent, stream_id=PRINTABLE, user=USERS, count=st.integers(0, 100_000_000)),
]
"""One strategy per event model."""

EVENTS: st.SearchStrategy[EventBase] = st.one_of(EVENT_STRATEGIES)
"""A valid event of any type."""

JUNK_TEXT = st.one_of(
    st.just(""),
    st.text(max_size=30),
    st.text(min_size=5000, max_size=6000, alphabet="x\u00e9\U0001f600"),
    st.sampled_from(["-1", "NaN", "inf", "1e999", "None", "null", "[]", "{}", "0x10", "\x00"]),
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
)
"""Text values that usually break a field: empty, huge, unicode, numeric junk."""

JUNK_VALUES = st.one_of(JUNK_TEXT, st.binary(max_size=20))
"""As :data:`JUNK_TEXT`, plus raw (often non-UTF-8) bytes."""

FLAT_DICTS = st.dictionaries(
    st.one_of(
        st.text(max_size=20),
        st.sampled_from(["v", "type", "id", "channel", "ts", "source", "user", "amount"]),
    ),
    st.one_of(st.text(max_size=50), st.sampled_from(["chat", "donation", "bits", "sub", "1"])),
    max_size=12,
)
"""Arbitrary flat string dicts, biased towards the contract's field names."""


@st.composite
def mutated_entries(
    draw: st.DrawFn, values: st.SearchStrategy[Any] = JUNK_VALUES
) -> dict[Any, Any]:
    """A valid entry's fields with one or more fields dropped, replaced or added."""
    from shared.events import to_fields

    fields: dict[Any, Any] = dict(to_fields(draw(EVENTS)))
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["drop", "replace", "add"]))
        name = draw(st.sampled_from(sorted(fields))) if fields else "id"
        if action == "drop":
            fields.pop(name, None)
        elif action == "replace":
            fields[name] = draw(values)
        else:
            fields[draw(st.text(min_size=1, max_size=10))] = draw(values)
    return fields


AMOUNTS: st.SearchStrategy[Decimal | float | int] = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True),
    st.floats(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.decimals(min_value=Decimal("-1"), max_value=Decimal("2000000"), places=4),
)
"""Amounts of every kind a payload can carry: NaN, infinities, huge, tiny, negative, exact."""

NESTING_DEPTHS = st.integers(min_value=1, max_value=32_000)
"""How deep a hostile JSON body nests (Python's parser gives up near 1,000)."""


def nested_json(depth: int) -> str:
    """A JSON array nested ``depth`` deep: ``[[[...]]]``."""
    return "[" * depth + "]" * depth
