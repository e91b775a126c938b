"""Reading the dead-letter streams: which dead letters, newest or all, and whether one can go back.

Every partition has its own dead-letter stream, ``events:{pNN}:dead``, next to its
event streams (same hash tag, so same Redis Cluster slot). A consumer group writes
each entry it rejects there with ``reason``, ``stream``, ``entry_id``, ``raw`` (JSON
of the original fields), ``group`` and ``ts`` (``shared/consumer.py``);
:func:`check` parses ``raw`` with the shared models to say whether it would now be
accepted on the stream it came from.

Entry ids of two partitions' dead streams can be equal, so a dead letter is named
by its partition and its entry id: ``p07/1772190000123-0`` (:func:`dead_id`). A
plain entry id names a dead letter too when only one partition holds it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pydantic
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from shared.clock import TimestampError, epoch_ms, parse_ts
from shared.events import EventBase, decode_fields, describe_validation_error, parse_fields
from shared.keys import EVENT_STREAMS, Keys, Stream
from shared.partitions import tag

PAGE_ENTRIES = 1000
"""Entries read per XRANGE/XREVRANGE call."""

DEAD_ID = re.compile(r"p(\d{1,5})/(\d{1,20}-\d{1,20})")
"""A dead letter's id: ``p{partition:02d}/{entry id in that partition's dead stream}``."""

ENTRY_ID = re.compile(r"\d{1,20}-\d{1,20}")
"""A plain stream entry id, accepted where only one partition holds it."""


def dead_id(partition: int, entry_id: str) -> str:
    """The id a person uses for a dead letter, e.g. ``p07/1772190000123-0``."""
    return f"p{partition:02d}/{entry_id}"


def parse_dead_id(text: str) -> tuple[int | None, str]:
    """``(partition, entry id)`` of ``p07/1-0``, ``(None, entry id)`` of a plain ``1-0``.

    Raises ``ValueError`` for anything else.
    """
    qualified = DEAD_ID.fullmatch(text)
    if qualified:
        return int(qualified.group(1)), qualified.group(2)
    if ENTRY_ID.fullmatch(text):
        return None, text
    raise ValueError(f"{text!r} is not a dead-letter id (like p07/1772190000123-0)")


def dead_streams_label(keys: Keys) -> str:
    """How every partition's dead stream is written in messages: ``events:{pNN}:dead``."""
    return keys.dead(0).replace(tag(0), "{pNN}")


@dataclass(frozen=True)
class DeadEntry:
    """One entry of a partition's dead stream, fields as stored (malformed ones too)."""

    partition: int
    dead_entry_id: str
    """Its entry id in ``events:{pNN}:dead``."""
    fields: Mapping[str, str]

    @property
    def dead_id(self) -> str:
        """``p07/1772190000123-0``: unique across partitions (see :func:`dead_id`)."""
        return dead_id(self.partition, self.dead_entry_id)

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

    @cached_property
    def channel(self) -> str | None:
        """The ``channel`` field of the rejected entry's raw fields, if it has one."""
        try:
            raw = json.loads(self.fields.get("raw", ""))
        except json.JSONDecodeError:
            return None
        channel = raw.get("channel") if isinstance(raw, dict) else None
        return channel if isinstance(channel, str) else None

    @cached_property
    def when_ms(self) -> int:
        """When it was dead-lettered (epoch ms): its ``ts``, else its entry id's time.

        Entry ids of different Redis Cluster nodes come from different clocks and do
        not order dead letters of different partitions; ``ts`` (the writer's wall
        clock) does, within the writers' clock skew.
        """
        try:
            return epoch_ms(parse_ts(self.fields.get("ts", "")))
        except TimestampError:
            return int(self.dead_entry_id.split("-")[0])


@dataclass(frozen=True)
class Selection:
    """Which dead letters a command looks at: any combination of filters, or all."""

    stream: Stream | None = None
    """Only those that came from this kind of stream."""
    partition: int | None = None
    """Only this partition's dead stream."""
    channel: str | None = None
    """Only those whose raw fields name this channel (read from its partition only)."""

    def partitions(self, keys: Keys) -> list[int]:
        """The partitions whose dead streams can hold a selected dead letter."""
        if self.channel is not None:
            return [keys.partitions.of(self.channel)]
        if self.partition is not None:
            return [self.partition]
        return list(keys.partitions.all())

    def matches(self, entry: DeadEntry, keys: Keys) -> bool:
        """Whether ``entry`` passes the filters."""
        if self.stream is not None and entry.stream != keys.stream(self.stream, entry.partition):
            return False
        return self.channel is None or (entry.channel or "").lower() == self.channel.lower()

    @property
    def filtered(self) -> bool:
        """Whether a filter other than the partition applies (so pages skip entries)."""
        return self.stream is not None or self.channel is not None

    def describe(self) -> str:
        """`` from chat of channel demo in partition 7``; empty when nothing is filtered."""
        text = f" from {self.stream.value}" if self.stream is not None else ""
        if self.channel is not None:
            text += f" of channel {self.channel}"
        if self.partition is not None:
            text += f" in partition {self.partition}"
        return text

    def where(self, keys: Keys) -> str:
        """The dead stream(s) read: ``events:{p07}:dead``, or ``the 64 events:{pNN}:dead``."""
        partitions = self.partitions(keys)
        if len(partitions) == 1:
            return keys.dead(partitions[0])
        return f"the {len(partitions)} {dead_streams_label(keys)}"


def _entry(partition: int, entry_id: Any, fields: Any) -> DeadEntry:
    return DeadEntry(partition, str(entry_id), dict(decode_fields(fields or {})))


async def _newest_of(
    redis: Redis, keys: Keys, partition: int, limit: int, selection: Selection
) -> list[DeadEntry]:
    """Up to ``limit`` selected dead letters of one partition, newest first."""
    found: list[DeadEntry] = []
    end = "+"
    page_size = PAGE_ENTRIES if selection.filtered else min(limit, PAGE_ENTRIES)
    while len(found) < limit:
        page: list[Any] = list(
            await redis.xrevrange(keys.dead(partition), max=end, min="-", count=page_size) or []
        )
        for entry_id, fields in page:
            entry = _entry(partition, entry_id, fields)
            if selection.matches(entry, keys):
                found.append(entry)
                if len(found) == limit:
                    break
        if len(page) < page_size:
            break
        end = f"({page[-1][0]}"
    return found


async def newest(
    redis: Redis, keys: Keys, limit: int, selection: Selection | None = None
) -> list[DeadEntry]:
    """Up to ``limit`` selected dead letters of every partition, newest first.

    Each partition's newest ``limit`` are merged by :attr:`DeadEntry.when_ms` (then
    partition and entry id, for a stable order), since entry ids of partitions on
    different nodes do not compare.
    """
    selection = selection or Selection()
    merged: list[DeadEntry] = []
    for partition in selection.partitions(keys):
        merged += await _newest_of(redis, keys, partition, limit, selection)
    merged.sort(key=_order, reverse=True)
    return merged[:limit]


def _order(entry: DeadEntry) -> tuple[int, int, int, int]:
    ms, _, seq = entry.dead_entry_id.partition("-")
    return entry.when_ms, entry.partition, int(ms), int(seq or 0)


async def count(redis: Redis, keys: Keys, partitions: Iterable[int]) -> int:
    """How many entries the dead streams of ``partitions`` hold together."""
    total = 0
    for partition in partitions:
        total += int(await redis.xlen(keys.dead(partition)))
    return total


async def read_all(redis: Redis, keys: Keys, partitions: Iterable[int]) -> list[DeadEntry]:
    """Every dead letter of ``partitions``, oldest first (by ``ts``, as :func:`newest`).

    Each dead stream is capped at ``STREAM_MAXLEN_DEAD``.
    """
    entries: list[DeadEntry] = []
    for partition in partitions:
        start = "-"
        while True:
            page: list[Any] = list(
                await redis.xrange(keys.dead(partition), min=start, max="+", count=PAGE_ENTRIES)
                or []
            )
            entries += [_entry(partition, entry_id, fields) for entry_id, fields in page]
            if len(page) < PAGE_ENTRIES:
                break
            start = f"({page[-1][0]}"
    entries.sort(key=_order)
    return entries


def stream_kind(keys: Keys, stream_key: str) -> tuple[Stream, int] | None:
    """The event stream kind and partition ``stream_key`` names in this deployment, or None."""
    try:
        kind, partition = keys.kind_of(stream_key), keys.partition_of_stream(stream_key)
    except ValueError:
        return None  # another prefix, a partition past PARTITIONS, another spelling of the tag
    return (kind, partition) if kind in EVENT_STREAMS else None  # not the dead stream


def check(entry: DeadEntry, keys: Keys) -> EventBase | str:
    """The event to requeue, or why ``entry`` cannot be requeued."""
    if not entry.stream or "raw" not in entry.fields:
        return "not a dead letter: it has no stream or raw field"
    found = stream_kind(keys, entry.stream)
    if found is None:
        return (
            f"{entry.stream} is not an event stream of this deployment "
            f"(REDIS_KEY_PREFIX={keys.prefix!r}, PARTITIONS={keys.partitions.count})"
        )
    kind, partition = found
    if partition != entry.partition:
        return f"{entry.stream} is not in partition {entry.partition}, whose dead stream holds it"
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
    home = keys.partitions.of(event.channel)
    if home != partition:
        return (
            f"channel {event.channel!r} belongs to partition {home}, not {partition} "
            f"(PARTITIONS changed?): its consumers would reject it again"
        )
    return event


async def consumer_groups(redis: Redis, stream_key: str) -> tuple[str, ...]:
    """Names of the consumer groups reading ``stream_key`` (none if it does not exist)."""
    try:
        groups: list[dict[str, Any]] = await redis.xinfo_groups(stream_key)
    except ResponseError:
        return ()
    return tuple(str(group["name"]) for group in groups)
