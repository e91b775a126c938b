"""The one way events get onto the streams: validated, deduplicated, batched.

:class:`Publisher` validates every event with the shared models, groups them by
their channel's partition (keeping each partition's order), and writes each group
with one Lua script call that, per event, sets the dedupe marker
``dedupe:{pNN}:{source}:{id}`` with ``SET NX PX`` and XADDs to
``events:{pNN}:<kind>`` only if the marker was new. All keys of one call carry one
partition's hash tag, so on Redis Cluster a call touches one slot.
The check and the write are one atomic step, so the same ``source`` + ``id``
published twice, even by two processes at once, lands once, while its marker
lives (its TTL depends on the type: see ``BaseServiceSettings.dedupe_ttl_ms``).
Each event's fields travel in one JSON argument per batch
(``[[maxlen, ttl_ms, [name, value, ...]], ...]``, field order kept), which cuts
client-side command packing several-fold against one argument per field; keys
are still declared in KEYS.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter as Counter_
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter
from redis.asyncio import Redis

from shared.events import DeadLetter, EventBase, dead_letter_fields, flat_fields, parse_fields
from shared.keys import Stream
from shared.settings import HIGH_VOLUME_TYPES, BaseServiceSettings

log = logging.getLogger(__name__)

CLUSTER_CONCURRENCY = 16
"""Script calls in flight at once on a cluster (one per partition at most)."""

PUBLISHED = Counter(
    "streamloop_events_published_total", "Events written to a stream.", ["stream", "source"]
)
DUPLICATES = Counter(
    "streamloop_events_duplicate_total", "Events dropped as already published.", ["source"]
)

PUBLISH_SCRIPT = """
local events = cjson.decode(ARGV[1])
local ids = {}
for n, event in ipairs(events) do
  local i = 2 * n - 1
  if redis.call('SET', KEYS[i], '1', 'NX', 'PX', event[2]) then
    ids[n] = redis.call('XADD', KEYS[i + 1], 'MAXLEN', '~', event[1], '*', unpack(event[3]))
  else
    ids[n] = ''
  end
end
return ids
"""


@dataclass
class PublishResult:
    """What a publish call did: entry ids written, and events skipped as duplicates."""

    entry_ids: list[str] = field(default_factory=list)
    duplicates: list[EventBase] = field(default_factory=list)

    @property
    def published(self) -> int:
        """How many events were written."""
        return len(self.entry_ids)


class Publisher:
    """Validates, deduplicates and XADDs events in batches of ``batch_size``."""

    def __init__(
        self, redis: Redis, settings: BaseServiceSettings, *, batch_size: int = 500
    ) -> None:
        self._redis = redis
        self._settings = settings
        self._keys = settings.keys
        self._batch_size = batch_size
        self._script = redis.register_script(PUBLISH_SCRIPT)
        self._maxlens = {kind: settings.stream_maxlen(kind) for kind in Stream}
        self._chat_ttl_ms = settings.dedupe_ttl_ms("chat")
        self._ttl_ms = settings.dedupe_ttl_ms("donation")

    async def publish(self, event: EventBase | Mapping[str, Any]) -> bool:
        """Publish one event; ``False`` when it was a duplicate."""
        result = await self.publish_many([event])
        return result.published == 1

    async def dead_letter(self, letter: DeadLetter) -> str:
        """XADD ``letter`` to its stream's partition's ``events:{pNN}:dead`` (capped at
        ``STREAM_MAXLEN_DEAD``); its entry id."""
        entry_id: Any = await self._redis.xadd(
            self._keys.dead(self._keys.partition_of_stream(letter.stream)),
            dead_letter_fields(letter),  # type: ignore[arg-type]
            maxlen=self._settings.stream_maxlen_dead,
            approximate=True,
        )
        return str(entry_id)

    async def publish_many(self, events: Iterable[EventBase | Mapping[str, Any]]) -> PublishResult:
        """Publish events, in order within each partition, one script call per batch of
        up to ``batch_size`` events of one partition.

        Raises ``pydantic.ValidationError`` before writing anything if any event
        (given as a mapping) breaks the contract. If Redis fails midway, earlier
        batches stay published; calling again with the same events is safe, since
        those already published are skipped as duplicates.
        """
        validated = [validate(event) for event in events]
        size = self._batch_size
        batches = [
            group[start : start + size]
            for group in self._by_partition(validated)
            for start in range(0, len(group), size)
        ]
        result = PublishResult()
        if len(batches) == 1:
            self._record(batches[0], await self._call(batches[0]), result)
        elif batches and isinstance(self._redis, Redis):
            await self._publish_overlapped(batches, result)
        elif batches:
            await self._publish_per_node(batches, result)
        return result

    async def _call(self, batch: list[EventBase]) -> list[str]:
        """One script call for ``batch`` (it reloads the script on NOSCRIPT, as after a
        failover: the dedupe markers make that retry safe)."""
        _, keys, args = self._pack(batch)
        entry_ids: list[str] = await self._script(keys=keys, args=args)
        return entry_ids

    async def _publish_per_node(
        self, batches: list[list[EventBase]], result: PublishResult
    ) -> None:
        """On a cluster: partitions in parallel (each call goes to its partition's node,
        at most ``CLUSTER_CONCURRENCY`` at once), each partition's batches in order."""
        limit = asyncio.Semaphore(CLUSTER_CONCURRENCY)
        replies: dict[int, list[str]] = {}
        by_partition: dict[int, list[int]] = {}
        for index, batch in enumerate(batches):
            by_partition.setdefault(self._keys.partitions.of(batch[0].channel), []).append(index)

        async def publish_partition(indexes: list[int]) -> None:
            for index in indexes:
                async with limit:
                    replies[index] = await self._call(batches[index])

        outcomes = await asyncio.gather(
            *(publish_partition(ix) for ix in by_partition.values()), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):  # all finished: none left running
                raise outcome
        for index, batch in enumerate(batches):
            self._record(batch, replies[index], result)

    def _by_partition(self, events: list[EventBase]) -> list[list[EventBase]]:
        """``events`` grouped by their channel's partition, each group in arrival order."""
        groups: dict[int, list[EventBase]] = {}
        for event in events:
            groups.setdefault(self._keys.partitions.of(event.channel), []).append(event)
        return list(groups.values())

    async def _publish_overlapped(
        self, batches: list[list[EventBase]], result: PublishResult
    ) -> None:
        """Send batch n+1 before reading batch n's reply, on one connection.

        Packing the next batch then overlaps Redis running the previous one, and
        one connection keeps the batches in order. Only on a single server: a
        cluster client sends each batch to its partition's node instead.
        """
        sha = await self._redis.script_load(PUBLISH_SCRIPT)
        pool = self._redis.connection_pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            in_flight: list[list[EventBase]] = []
            for batch in batches:
                numkeys, keys, args = self._pack(batch)
                await connection.send_command("EVALSHA", sha, numkeys, *keys, *args)
                in_flight.append(batch)
                if len(in_flight) == 2:
                    self._record(in_flight.pop(0), await connection.read_response(), result)
            for batch in in_flight:
                self._record(batch, await connection.read_response(), result)
        except BaseException:
            await connection.disconnect()
            raise
        finally:
            await pool.release(connection)

    def _pack(self, batch: list[EventBase]) -> tuple[int, list[str], list[str | int]]:
        """KEYS (dedupe marker and stream per event) and ARGV (TTL, JSON of all fields)."""
        keys: list[str] = []
        packed: list[tuple[int, int, list[str]]] = []
        for event in batch:
            kind = event.stream
            keys += [
                self._keys.dedupe(event.source, event.id, event.channel),
                self._keys.channel_stream(kind, event.channel),
            ]
            ttl_ms = self._chat_ttl_ms if event.type in HIGH_VOLUME_TYPES else self._ttl_ms
            packed.append((self._maxlens[kind], ttl_ms, flat_fields(event)))
        return len(keys), keys, [json.dumps(packed, ensure_ascii=False)]

    @staticmethod
    def _record(batch: list[EventBase], entry_ids: list[str], result: PublishResult) -> None:
        published: Counter_[tuple[str, str]] = Counter_()
        for event, entry_id in zip(batch, entry_ids, strict=True):
            if entry_id:
                result.entry_ids.append(entry_id)
                published[(event.stream.value, event.source)] += 1
            else:
                result.duplicates.append(event)
                DUPLICATES.labels(event.source).inc()
        for (stream, source), count in published.items():
            PUBLISHED.labels(stream, source).inc(count)


def validate(event: EventBase | Mapping[str, Any]) -> EventBase:
    """``event`` as a validated model (mappings are parsed with the shared schema)."""
    if isinstance(event, EventBase):
        return event
    parsed: EventBase = parse_fields(event)
    return parsed
