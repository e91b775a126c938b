"""Record the event streams to JSON Lines, and replay a recording through the Publisher.

A recording holds one JSON object per line::

    {"stream": "chat", "entry_id": "1772188200000-0", "fields": {"v": "1", "type": "chat", ...}}

``stream`` is the stream's kind (``chat``, ``donation``, ``sub``, ``viewers``,
``lifecycle``; never the dead-letter stream), without any key prefix and without
the partition (``events:{pNN}:chat`` is recorded as ``chat``): the channel in
``fields`` says where an event goes, so a recording replays into any deployment,
whatever its ``REDIS_KEY_PREFIX`` or ``PARTITIONS`` (the publisher puts each event
on its channel's partition). ``fields`` are the entry's string fields exactly as
stored; ``entry_id`` is the id it had in its partition's stream, for reference only.

Every partition's event streams are recorded. Order in the file: first a snapshot
of each stream in turn (partition by partition), each in entry-id order; then,
when following, new entries as they arrive (each stream still in entry-id order,
streams interleaved). The file is *not* merged by ``ts``: :func:`replay` sorts by
``ts`` itself. Following reads each partition with its own blocking XREAD of its
5 streams: on Redis Cluster a multi-key XREAD cannot span slots, and a partition's
streams share one (so a follow holds one connection per partition).

The command line is ``python -m services.ingest record|replay`` (``services/ingest/main.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pydantic
from redis.asyncio import Redis

from shared.events import EventBase, decode_fields, parse_fields
from shared.keys import Keys
from shared.publisher import Publisher
from shared.reconnect import until_connected
from shared.settings import BaseServiceSettings

log = logging.getLogger("services.ingest.sources.recording")

PAGE_ENTRIES = 1000
"""Entries read per XRANGE/XREAD call."""
FOLLOW_BLOCK_MS = 200
"""XREAD BLOCK time while following; bounds how long ``stop`` takes to be noticed."""
PACE_SLACK_S = 0.01
"""Events due within this many real seconds are published in the same batch."""
FAST_BATCH_EVENTS = 5000
"""Events per publish call when replaying as fast as possible."""

StreamEntry = tuple[str, str, Mapping[str, Any]]


class RecordingLineError(ValueError):
    """A recording line that is not a valid entry; the message says why."""


@dataclass(frozen=True)
class BadLine:
    """A skipped line of a recording: its 1-based number and the reason."""

    line_no: int
    reason: str


@dataclass
class ReplayResult:
    """What a replay did: lines read, events published, duplicates dropped, lines skipped."""

    lines: int = 0
    published: int = 0
    duplicates: int = 0
    bad_lines: list[BadLine] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        """How many lines were invalid and skipped."""
        return len(self.bad_lines)


@dataclass
class Recording:
    """A recording file read into validated events (file order) and its bad lines."""

    events: list[EventBase] = field(default_factory=list)
    lines: int = 0
    bad_lines: list[BadLine] = field(default_factory=list)


def stream_entries(reply: Any) -> list[StreamEntry]:
    """``(stream key, entry id, fields)`` of an XREAD reply (list or dict shape, str or bytes)."""
    items = reply.items() if isinstance(reply, dict) else (reply or [])
    return [
        (_text(stream), _text(entry_id), decode_fields(fields))
        for stream, entries in items
        for entry_id, fields in entries
    ]


async def record(
    redis: Redis,
    settings: BaseServiceSettings,
    path: str | Path,
    *,
    follow: bool = False,
    stop: asyncio.Event | None = None,
) -> int:
    """Write every entry of every event stream to ``path`` (JSON Lines); the count written.

    Takes a snapshot up to each stream's last entry at the start; with ``follow``
    it then keeps tailing (one XREAD BLOCK per partition) until ``stop`` is set
    (``None``: until cancelled). Setting ``stop`` also cuts a snapshot short.
    """
    stop = stop or asyncio.Event()
    keys = settings.keys
    with _open_for_writing(Path(path)) as out:
        ends = {key: await _last_id(redis, key) for key in keys.event_streams()}
        written = 0
        for key, end in ends.items():
            written += await _snapshot(redis, keys, key, end, out, stop)
        if follow:
            async with asyncio.TaskGroup() as followers:
                tasks = [
                    followers.create_task(
                        _follow(redis, keys, {key: ends[key] for key in streams}, out, stop)
                    )
                    for streams in map(keys.partition_streams, keys.partitions.all())
                ]
            written += sum(task.result() for task in tasks)
    log.info("recorded %d entries to %s", written, path)
    return written


async def replay(
    redis: Redis, settings: BaseServiceSettings, path: str | Path, *, speed: float
) -> ReplayResult:
    """Publish the events of a recording in ``ts`` order, paced by ``ts`` gaps / ``speed``.

    Ids, sources, timestamps and every field are kept, so replaying into a Redis
    that already has the events publishes nothing (all duplicates). ``speed`` 0 or
    infinity publishes as fast as possible. Invalid lines are logged with their
    line number, skipped and counted; they never stop the replay.
    """
    if speed < 0 or math.isnan(speed):
        raise ValueError(f"speed must be >= 0 (0 or inf = as fast as possible), got {speed}")
    loaded = load_recording(path)
    result = ReplayResult(lines=loaded.lines, bad_lines=loaded.bad_lines)
    events = sorted(loaded.events, key=lambda event: event.ts)
    await _publish_paced(Publisher(redis, settings), events, speed, result)
    log.info(
        "replayed %s: %d lines, %d published, %d duplicates, %d bad lines skipped",
        path, result.lines, result.published, result.duplicates, result.skipped,
    )  # fmt: skip
    return result


def load_recording(path: str | Path) -> Recording:
    """Read a recording, validating every line; bad lines are logged and collected."""
    recording = Recording()
    with Path(path).open(encoding="utf-8") as lines:
        for line_no, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            recording.lines += 1
            try:
                recording.events.append(parse_line(text))
            except RecordingLineError as error:
                log.warning("%s line %d skipped: %s", path, line_no, error)
                recording.bad_lines.append(BadLine(line_no, str(error)))
    return recording


def parse_line(text: str) -> EventBase:
    """The event on one recording line; :class:`RecordingLineError` says what is wrong."""
    try:
        entry = json.loads(text)
    except json.JSONDecodeError as error:
        raise RecordingLineError(f"not JSON: {error}") from None
    if not isinstance(entry, dict) or not isinstance(entry.get("fields"), dict):
        raise RecordingLineError('expected an object with a "fields" object')
    try:
        event: EventBase = parse_fields(entry["fields"])
    except pydantic.ValidationError as error:
        raise RecordingLineError(f"invalid event: {_describe(error)}") from None
    stream = entry.get("stream")
    if stream is not None and stream != event.stream.value:
        raise RecordingLineError(f"stream {stream!r} does not carry {event.type!r} events")
    return event


def entry_line(kind: str, entry_id: str, fields: Mapping[str, Any]) -> str:
    """One recording line (with its newline) for a stream entry."""
    entry = {"stream": kind, "entry_id": entry_id, "fields": dict(fields)}
    line = json.dumps(entry, ensure_ascii=False)
    return line + "\n"


async def _last_id(redis: Redis, key: str) -> str | None:
    last = await redis.xrevrange(key, count=1)
    return _text(last[0][0]) if last else None


async def _snapshot(
    redis: Redis, keys: Keys, key: str, end: str | None, out: TextIO, stop: asyncio.Event
) -> int:
    """Write ``key``'s entries up to ``end`` in entry-id order, a page at a time."""
    written = 0
    start = "-"
    while end is not None and not stop.is_set():
        page: list[Any] = list(
            await redis.xrange(key, min=start, max=end, count=PAGE_ENTRIES) or []
        )
        entries = [(key, _text(entry_id), decode_fields(fields)) for entry_id, fields in page]
        written += _write(out, keys, entries)
        if len(page) < PAGE_ENTRIES:
            break
        start = f"({entries[-1][1]}"
    return written


async def _follow(
    redis: Redis, keys: Keys, ends: dict[str, str | None], out: TextIO, stop: asyncio.Event
) -> int:
    """Append entries of ``ends``' streams (one partition's) as they arrive until ``stop``.

    Connection losses are retried. ``_write`` writes whole lines without awaiting,
    so the followers of several partitions never interleave within a line.
    """
    cursors: dict[Any, Any] = {key: end or "0-0" for key, end in ends.items()}
    written = 0

    async def read() -> Any:
        return await redis.xread(cursors, count=PAGE_ENTRIES, block=FOLLOW_BLOCK_MS)

    def unreachable(error: Exception, delay_s: float) -> None:
        log.warning("Redis unreachable while recording (%s); retry in %.1f s", error, delay_s)

    while not stop.is_set():
        reply = await until_connected(read, unreachable, stop=stop)  # None once stopped
        entries = stream_entries(reply)
        for key, entry_id, _fields in entries:
            cursors[key] = entry_id
        written += _write(out, keys, entries)
    return written


def _write(out: TextIO, keys: Keys, entries: Sequence[StreamEntry]) -> int:
    out.writelines(entry_line(keys.kind_of(key).value, entry_id, f) for key, entry_id, f in entries)
    out.flush()
    return len(entries)


@contextmanager
def _open_for_writing(path: Path) -> Iterator[TextIO]:
    with path.open("w", encoding="utf-8") as out:
        yield out


async def _publish_paced(
    publisher: Publisher, events: list[EventBase], speed: float, result: ReplayResult
) -> None:
    """Publish ``events`` (sorted by ts), each no earlier than its ts offset / ``speed``."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    fast = speed == 0 or math.isinf(speed)
    index = 0
    while index < len(events):
        if fast:
            end = min(index + FAST_BATCH_EVENTS, len(events))
        else:
            await asyncio.sleep(max(0.0, began + _offset_s(events, index) / speed - loop.time()))
            end = _due_end(events, index, (loop.time() - began + PACE_SLACK_S) * speed)
        published = await publisher.publish_many(events[index:end])
        result.published += published.published
        result.duplicates += len(published.duplicates)
        index = end


def _offset_s(events: list[EventBase], index: int) -> float:
    return (events[index].ts - events[0].ts).total_seconds()


def _due_end(events: list[EventBase], index: int, horizon_s: float) -> int:
    """The end of the run of events from ``index`` whose ts offset is within ``horizon_s``."""
    end = index + 1
    while end < len(events) and _offset_s(events, end) <= horizon_s:
        end += 1
    return end


def _describe(error: pydantic.ValidationError) -> str:
    parts = []
    for problem in error.errors(include_url=False):
        where = ".".join(str(part) for part in problem["loc"][1:]) or "entry"
        parts.append(f"{where}: {problem['msg']}")
    return "; ".join(parts)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
