"""Reading ``events:dead``: one dead letter, the newest or all of them, and whether it can go back.

A consumer group writes each entry it rejects with ``reason``, ``stream``,
``entry_id``, ``raw`` (JSON of the original fields), ``group`` and ``ts``
(``shared/consumer.py``); :func:`check` parses ``raw`` with the shared models to
say whether it would now be accepted on the stream it came from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pydantic
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from shared.events import EventBase, decode_fields, describe_validation_error, parse_fields
from shared.keys import EVENT_STREAMS, Keys, Stream

PAGE_ENTRIES = 1000
"""Entries read per XRANGE/XREVRANGE call."""


@dataclass(frozen=True)
class DeadEntry:
    """One entry of ``events:dead``, fields as stored (a malformed one is still listed)."""

    dead_id: str
    fields: Mapping[str, str]

    @property
    def stream(self) -> str:
        """Key of the stream the rejected entry was on."""
        return self.fields.get("stream", "")

    @property
    def entry_id(self) -> str:
        """Its entry id there."""
        return self.fields.get("entry_id", "")

    @property
    def group(self) -> str:
        """The consumer group that rejected it."""
        return self.fields.get("group", "")

    @property
    def original(self) -> tuple[str, str]:
        """(stream, entry id) of the rejected entry: the same for every group's dead letter."""
        return self.stream, self.entry_id


def _entry(dead_id: str, fields: Any) -> DeadEntry:
    return DeadEntry(dead_id, dict(decode_fields(fields or {})))


async def newest(
    redis: Redis, keys: Keys, limit: int, stream: Stream | None = None
) -> list[DeadEntry]:
    """Up to ``limit`` dead letters, newest first, only ``stream``'s when given."""
    wanted = keys.stream(stream) if stream is not None else None
    found: list[DeadEntry] = []
    end = "+"
    while len(found) < limit:
        page: list[Any] = list(
            await redis.xrevrange(keys.dead, max=end, min="-", count=PAGE_ENTRIES) or []
        )
        for dead_id, fields in page:
            entry = _entry(dead_id, fields)
            if wanted is None or entry.stream == wanted:
                found.append(entry)
                if len(found) == limit:
                    break
        if len(page) < PAGE_ENTRIES:
            break
        end = f"({page[-1][0]}"
    return found


async def read_all(redis: Redis, keys: Keys) -> list[DeadEntry]:
    """Every dead letter, oldest first (the stream is capped at ``STREAM_MAXLEN_DEAD``)."""
    entries: list[DeadEntry] = []
    start = "-"
    while True:
        page: list[Any] = list(
            await redis.xrange(keys.dead, min=start, max="+", count=PAGE_ENTRIES) or []
        )
        entries += [_entry(dead_id, fields) for dead_id, fields in page]
        if len(page) < PAGE_ENTRIES:
            return entries
        start = f"({page[-1][0]}"


def stream_kind(keys: Keys, stream_key: str) -> Stream | None:
    """The event stream ``stream_key`` names in this deployment, or None."""
    for kind in EVENT_STREAMS:
        if keys.stream(kind) == stream_key:
            return kind
    return None


def check(entry: DeadEntry, keys: Keys) -> EventBase | str:
    """The event to requeue, or why ``entry`` cannot be requeued."""
    if not entry.stream or "raw" not in entry.fields:
        return "not a dead letter: it has no stream or raw field"
    kind = stream_kind(keys, entry.stream)
    if kind is None:
        return (
            f"{entry.stream} is not an event stream of this deployment "
            f"(REDIS_KEY_PREFIX={keys.prefix!r})"
        )
    try:
        raw = json.loads(entry.fields["raw"])
    except json.JSONDecodeError as error:
        return f"raw is not JSON ({error})"
    if not isinstance(raw, dict):
        return "raw is not a JSON object"
    try:
        event: EventBase = parse_fields(raw)
    except pydantic.ValidationError as error:
        return f"still breaks the contract: {describe_validation_error(error)}"
    if event.stream is not kind:
        return f"still breaks the contract: type {event.type!r} does not belong on {entry.stream}"
    return event


async def consumer_groups(redis: Redis, stream_key: str) -> tuple[str, ...]:
    """Names of the consumer groups reading ``stream_key`` (none if it does not exist)."""
    try:
        groups: list[dict[str, Any]] = await redis.xinfo_groups(stream_key)
    except ResponseError:
        return ()
    return tuple(str(group["name"]) for group in groups)
