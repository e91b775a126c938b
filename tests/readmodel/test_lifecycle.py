"""Lifecycle members: one encoding shared by the writer and the readers, who parse it.

The readers used to find a stream start by matching ``'"type": "stream_started"'``
in the raw member, which held only for ``json.dumps(sort_keys=True)``'s spacing.
"""

from __future__ import annotations

import json

from redis.asyncio import Redis

from shared.keys import Keys
from shared.readmodel.lifecycle import (
    LATEST_PAGE,
    STREAM_STARTED,
    lifecycle_member,
    lifecycle_order,
    read_latest_lifecycle,
    stream_state,
)


def compact(record: dict[str, str]) -> str:
    """The record in a JSON spelling other than the writer's (no spaces, keys as given)."""
    return json.dumps(record, separators=(",", ":"))


def test_the_member_of_a_record_does_not_depend_on_its_key_order() -> None:
    record = {"type": STREAM_STARTED, "stream_id": "s1", "id": "e1", "source": "sim"}
    assert lifecycle_member(record) == lifecycle_member(dict(reversed(record.items())))


def test_at_one_instant_an_end_sorts_before_a_start_whatever_the_spelling() -> None:
    start = compact({"stream_id": "a", "type": "stream_started"})
    end = compact({"stream_id": "z", "type": "stream_ended"})
    assert sorted([(start, 5.0), (end, 5.0)], key=lifecycle_order) == [(end, 5.0), (start, 5.0)]


async def test_the_latest_reader_stops_at_a_start_in_any_spelling(
    redis: Redis, key_prefix: str
) -> None:
    lifecycle = Keys(key_prefix).analytics("demo").lifecycle
    members = {lifecycle_member({"type": STREAM_STARTED, "stream_id": "old"}): 1}
    members[compact({"type": STREAM_STARTED, "stream_id": "new"})] = 2
    for n in range(2 * LATEST_PAGE - 1):  # the new start ends a full second page
        change = {"type": "activity_changed", "stream_id": "new", "activity": f"a{n}"}
        members[lifecycle_member(change)] = 3 + n
    await redis.zadd(lifecycle, members)

    _, pairs = await read_latest_lifecycle(redis, Keys(key_prefix).analytics("demo"))

    assert "old" not in {json.loads(raw)["stream_id"] for raw, _ in pairs}
    assert stream_state(pairs).stream_id == "new"
