"""``parse_fields`` on hostile stream entries, and the to_fields/parse_fields round trip."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.events import EventBase, parse_fields, to_fields
from tests.hostile.strategies import (
    EVENT_STRATEGIES,
    EVENTS,
    FLAT_DICTS,
    JUNK_VALUES,
    mutated_entries,
)


def parse_or_reject(fields: Any) -> EventBase | None:
    """The model, or None when pydantic rejected the entry; any other exception fails."""
    try:
        event = parse_fields(fields)
    except pydantic.ValidationError:
        return None
    assert isinstance(event, EventBase)
    return event


@settings(max_examples=300, deadline=None)
@given(FLAT_DICTS)
def test_arbitrary_flat_dicts_parse_or_raise_validation_error(fields: dict[str, str]) -> None:
    parse_or_reject(fields)


@settings(max_examples=300, deadline=None)
@given(mutated_entries())
def test_mutated_valid_entries_parse_or_raise_validation_error(fields: dict[Any, Any]) -> None:
    event = parse_or_reject(fields)
    if event is not None:  # a mutation that kept it valid must still round-trip
        assert parse_fields(to_fields(event)) == event


@settings(max_examples=200, deadline=None)
@given(EVENTS, st.data())
def test_bytes_and_wrong_typed_values_parse_or_raise_validation_error(
    event: EventBase, data: st.DataObject
) -> None:
    fields: dict[Any, Any] = {
        name.encode(): value.encode() for name, value in to_fields(event).items()
    }
    name = data.draw(st.sampled_from(sorted(fields)))
    fields[name] = data.draw(
        st.one_of(JUNK_VALUES, st.integers(), st.floats(), st.none(), st.lists(st.integers()))
    )
    parse_or_reject(fields)


@pytest.mark.parametrize("index", range(len(EVENT_STRATEGIES)))
@settings(max_examples=60, deadline=None)
@given(st.data())
def test_every_valid_event_round_trips_through_its_fields(index: int, data: st.DataObject) -> None:
    event = data.draw(EVENT_STRATEGIES[index])
    fields = to_fields(event)
    assert all(isinstance(value, str) for value in fields.values())
    assert parse_fields(fields) == event
    assert parse_fields({k.encode(): v.encode() for k, v in fields.items()}) == event
