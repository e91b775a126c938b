"""The consumer-group runner every service uses to read the event streams.

One :class:`ConsumerRunner` reads the streams of one partition
(``events:{pNN}:<kind>``) in a consumer group and hands validated batches to a
:class:`Handler`; :class:`shared.partitioned_consumer.PartitionedConsumer` runs one
per partition. Every key a runner touches carries its partition's hash tag, so its
reads and commits stay on one Redis Cluster slot. The guarantees:

* groups are created from the start of each stream (``XGROUP CREATE ... 0
  MKSTREAM``, ignoring only BUSYGROUP), so a late consumer misses nothing;
* the handler queues its Redis effects on a MULTI pipeline; the runner adds the
  XACKs (and any dead letters) to the same transaction, so effects and acks
  commit together and a crash at any instant neither loses nor doubles an event;
* on start it re-reads its own pending entries; every few seconds it takes over
  entries left pending by a dead consumer. Before claiming it bumps the previous
  owner's *fence* key, which that owner WATCHes while committing, so a slow but
  alive owner cannot commit a batch someone else has taken (this is why it uses
  XPENDING + XCLAIM rather than XAUTOCLAIM: it must know whose entries it takes);
* an entry that breaks the contract (or cannot be parsed for any reason), or
  fails its handler ``max_attempts`` times for any reason, goes to
  the partition's ``events:{pNN}:dead`` with the reason and is acked (so does an
  entry whose channel belongs to another partition): no entry stops the runner;
* a lost connection is retried with capped backoff; a missing group (NOGROUP)
  stops the runner loudly; ``stop`` finishes the batch in hand, then returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pydantic
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import MaxConnectionsError, ResponseError, WatchError

from shared.clock import utc_now
from shared.consumer_errors import (
    ConsumerGroupMissing,
    ScriptMissing,
    group_missing,
    is_nogroup,
    is_noscript,
    is_transient,
)
from shared.consumer_metrics import CONSUMED, DEAD_LETTERED, RunSummary, record_lag
from shared.events import (
    DeadLetter,
    Event,
    dead_letter_fields,
    decode_fields,
    describe_validation_error,
    parse_fields,
)
from shared.keys import EVENT_STREAMS, Stream
from shared.reclaim import claim, forget, forgettable, read_round
from shared.reconnect import until_connected
from shared.settings import ConsumerSettings

log = logging.getLogger(__name__)

__all__ = [
    "ConsumerGroupMissing",
    "ConsumerRunner",
    "Delivery",
    "Handler",
    "RunSummary",
    "default_consumer_name",
]


@dataclass(frozen=True)
class Delivery:
    """One validated entry handed to a handler."""

    stream: Stream
    entry_id: str
    event: Event
    partition: int = 0


class Handler(Protocol):
    """What a service plugs into the runner."""

    async def handle(self, batch: Sequence[Delivery], tx: Pipeline) -> None:
        """Queue the Redis effects of ``batch`` on ``tx``, a MULTI pipeline.

        Do not execute ``tx``: the runner adds the XACKs and commits both at once.
        Reads must use another client. Raise to have the batch retried entry by entry.
        Queue scripts with :func:`shared.redis_client.queue_script`: on a cluster
        (``tx`` is then a ``ClusterPipeline``) a bare EVALSHA of a script the node does
        not know fails alone at EXEC, while the rest of the transaction commits.
        """


@dataclass
class _Batch:
    """Entries of one read, sorted into handleable ones and rejects."""

    deliveries: list[Delivery] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    acks: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))


def default_consumer_name() -> str:
    """``hostname-pid``: unique per process, stable per container."""
    return f"{socket.gethostname()}-{os.getpid()}"


class ConsumerRunner:
    """Reads ``streams`` in consumer group ``group`` and feeds ``handler`` (see module doc)."""

    def __init__(
        self,
        redis: Redis,
        settings: ConsumerSettings,
        group: str,
        handler: Handler,
        streams: Iterable[Stream] | None = None,
        *,
        partition: int,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.group = group
        self.handler = handler
        self.keys = settings.keys
        self.consumer = settings.consumer_name or default_consumer_name()
        self.partition = partition
        kinds = streams if streams is not None else EVENT_STREAMS
        self.streams = [self.keys.stream(kind, partition) for kind in kinds]
        self.fence = self.keys.consumer_fence(group, self.consumer, partition)
        self.failures = self.keys.consumer_failures(group, partition)
        self.summary = RunSummary()
        self._reread_pending = True
        self._next_reclaim = 0.0  # the first round at once
        phase = self.keys.partitions.phase(partition)  # see _schedule_reclaim and _read
        self._reclaim_offset_s = phase * settings.consumer_reclaim_interval_s
        self._read_offset_ms = round(phase * settings.consumer_block_ms)
        self._stop: asyncio.Event | None = None

    async def run(self, stop: asyncio.Event) -> RunSummary:
        """Consume until ``stop`` is set; return (and log) the summary.

        A blocking read in progress when ``stop`` is set is abandoned at once (what it
        may have taken stays pending for this consumer, and is read again or claimed),
        so a long ``CONSUMER_BLOCK_MS`` never delays a stop.
        """
        self._stop = stop
        await self._until_connected(stop, self.ensure_groups)
        while not stop.is_set():
            await self._until_connected(stop, self.step)
        log.debug(self.summary.line(self.group, self.consumer))  # the service logs its own line
        return self.summary

    async def ensure_groups(self) -> None:
        """Create the group on every stream from its start; an existing group is fine."""
        for stream in self.streams:
            try:
                await self.redis.xgroup_create(stream, self.group, id="0", mkstream=True)
            except ResponseError as error:
                if not str(error).startswith("BUSYGROUP"):
                    raise

    async def step(self) -> int:
        """Reclaim if due, read one batch and commit it; return entries handled.

        Raises :class:`ConsumerGroupMissing` when the group vanished, whichever
        command (reclaim, read, commit) was the first to see it.
        """
        try:
            return await self._step()
        except ResponseError as error:
            if is_nogroup(error):
                raise group_missing(error, self.group) from error
            if is_noscript(error):
                raise ScriptMissing(f"{error} (a promoted replica knows no scripts)") from error
            raise

    async def _step(self) -> int:
        if time.monotonic() >= self._next_reclaim:
            await self.reclaim()
        reading_pending = self._reread_pending
        response = await self._read(pending=reading_pending)
        entries = [(stream, eid, fields) for stream, items in response for eid, fields in items]
        if reading_pending and not entries:
            self._reread_pending = False
        return await self.process(entries) if entries else 0

    async def process(self, entries: Sequence[tuple[str, str, Any]]) -> int:
        """Validate ``entries`` and commit them with the handler's effects."""
        batch = self._sort(entries)
        try:
            await self._commit(batch.deliveries, batch.dead, batch.acks)
        except WatchError as error:
            return self._fenced(len(entries), error)
        except Exception as error:
            if is_transient(error):
                raise
            log.warning(
                "%s: batch of %d failed (%s); retrying one by one", self.group, len(entries), error
            )
            return await self._retry_one_by_one(batch)
        return len(batch.deliveries)

    async def _retry_one_by_one(self, batch: _Batch) -> int:
        """:meth:`_commit_one_by_one`; a commit of it the fence refuses (its dead letters
        and acks, or a dead letter after the last attempt) drops the rest, to be read again."""
        try:
            await self._commit_one_by_one(batch)
        except WatchError as error:
            return self._fenced(len(batch.deliveries) + len(batch.dead), error)
        return len(batch.deliveries)

    async def reclaim(self) -> int:
        """One reclaim round (:mod:`shared.reclaim`); the number of entries taken over.

        Takes over entries idle longer than ``claim_min_idle_ms`` in other consumers'
        hands (and handles them), forgets consumers idle longer than
        ``forget_idle_ms`` with nothing pending, and sets the lag gauge. One round
        trip reads all of it for every stream; claiming and forgetting cost one
        more each, only when there is something to claim or forget.
        """
        self._schedule_reclaim()
        states = await read_round(
            self.redis,
            self.streams,
            self.group,
            count=self.settings.consumer_batch_size,
            min_idle_ms=self.settings.consumer_claim_min_idle_ms,
        )
        for state in states:
            record_lag(self.group, self.keys.kind_of(state.stream), self.partition, state)
        consumers = {state.stream: state.consumers for state in states}
        stale = {
            state.stream: theirs for state in states if (theirs := state.theirs(self.consumer))
        }
        claimed = 0
        if stale:
            taken, consumers_after = await claim(
                self.redis,
                self.group,
                self.consumer,
                self.settings.consumer_claim_min_idle_ms,
                stale,
                self._fence_of,
            )
            consumers |= consumers_after
            for stream, entries in taken.items():
                claimed += await self._handle_claimed(stream, entries)
        await self._forget_idle_consumers(consumers)
        return claimed

    def _schedule_reclaim(self) -> None:
        """The next round in one interval; the second one later by the partition's phase.

        The runners of a process start together: without the offset all of them would
        run every round in the same instant, competing with the event path.
        """
        self._next_reclaim = (
            time.monotonic() + self.settings.consumer_reclaim_interval_s + self._reclaim_offset_s
        )
        self._reclaim_offset_s = 0.0

    def _fence_of(self, consumer: str) -> str:
        return self.keys.consumer_fence(self.group, consumer, self.partition)

    async def _handle_claimed(self, stream: str, taken: list[Any]) -> int:
        log.warning(
            "%s: took over %d stale entries of %s from dead consumers",
            self.group,
            len(taken),
            stream,
        )
        self.summary.claimed += len(taken)
        await self.process([(stream, entry_id, fields) for entry_id, fields in taken])
        return len(taken)

    async def _forget_idle_consumers(self, consumers: dict[str, list[dict[str, Any]]]) -> None:
        """Remove consumers long gone (idle, nothing pending), so the group stays readable."""
        idle_ms = self.settings.consumer_forget_idle_ms
        gone = [
            (stream, info)
            for stream, infos in consumers.items()
            for info in forgettable(infos, self.consumer, idle_ms)
        ]
        if not gone:
            return
        await forget(
            self.redis, self.group, [(s, info["name"]) for s, info in gone], self._fence_of
        )
        for stream, info in gone:
            log.info(
                "%s: forgot consumer %s on %s (idle %d s)",
                self.group,
                info["name"],
                stream,
                info["idle"] // 1000,
            )

    async def _read(self, *, pending: bool) -> list[Any]:
        start = "0" if pending else ">"
        read: Awaitable[Any] = self.redis.xreadgroup(
            self.group,
            self.consumer,
            dict.fromkeys(self.streams, start),
            count=self.settings.consumer_batch_size,
            block=None if pending else self._block_ms(),
        )
        if pending or self._stop is None:
            response = await read
        else:
            response = await _unless_stopped(read, self._stop)
        return list(response or [])

    def _block_ms(self) -> int:
        """``consumer_block_ms``; the first blocking read longer by the partition's phase.

        An idle runner's steps follow its blocking reads, which time out together for
        runners started together: the offset spreads their reads (and the reclaim
        rounds that start the steps) over the block time instead.
        """
        block_ms, self._read_offset_ms = self.settings.consumer_block_ms + self._read_offset_ms, 0
        return block_ms

    def _sort(self, entries: Sequence[tuple[str, str, Any]]) -> _Batch:
        batch = _Batch()
        for stream, entry_id, fields in entries:
            batch.acks[stream].append(entry_id)
            if fields is None or not fields:
                log.warning(
                    "%s: %s %s was trimmed before it was read", self.group, stream, entry_id
                )
                continue
            delivery_or_reason = self._validate(stream, entry_id, fields)
            if isinstance(delivery_or_reason, Delivery):
                batch.deliveries.append(delivery_or_reason)
            else:
                batch.dead.append(self._dead_letter(stream, entry_id, fields, delivery_or_reason))
        return batch

    def _validate(self, stream: str, entry_id: str, fields: Any) -> Delivery | str:
        try:
            event = parse_fields(fields)
        except pydantic.ValidationError as error:
            return describe_validation_error(error)
        except Exception as error:  # whatever the entry holds, it must not stop the runner
            return f"entry cannot be parsed: {error!r}"
        kind = self.keys.kind_of(stream)
        if event.stream != kind:
            return f"type {event.type!r} does not belong on {stream}"
        home = self.keys.partitions.of(event.channel)
        if home != self.partition:
            return (
                f"channel {event.channel!r} belongs to partition {home}, not {self.partition}: "
                "entries must be published through the publisher"
            )
        return Delivery(kind, entry_id, event, self.partition)

    def _dead_letter(self, stream: str, entry_id: str, fields: Any, reason: str) -> DeadLetter:
        raw = json.dumps(dict(decode_fields(fields)), ensure_ascii=False)
        log.warning("%s: dead-lettering %s %s: %s", self.group, stream, entry_id, reason)
        return DeadLetter(
            reason=reason[:2000],
            stream=stream,
            entry_id=entry_id,
            raw=raw,
            group=self.group,
            ts=utc_now(),
        )

    async def _commit(
        self,
        deliveries: Sequence[Delivery],
        dead: Sequence[DeadLetter],
        acks: dict[str, list[str]],
    ) -> None:
        async with self.redis.pipeline(transaction=True) as tx:
            await tx.watch(self.fence)
            tx.multi()  # type: ignore[no-untyped-call]
            if deliveries:
                await self.handler.handle(deliveries, tx)
            self._queue_acks(tx, dead, acks)
            await tx.execute()
        self._count(deliveries, dead)

    def _queue_acks(
        self, tx: Pipeline, dead: Sequence[DeadLetter], acks: dict[str, list[str]]
    ) -> None:
        for letter in dead:
            tx.xadd(
                self.keys.dead(self.partition),
                dead_letter_fields(letter),  # type: ignore[arg-type]
                maxlen=self.settings.stream_maxlen_dead,
                approximate=True,
            )
        failures = [f"{stream}/{eid}" for stream, ids in acks.items() for eid in ids]
        for stream, ids in acks.items():
            tx.xack(stream, self.group, *ids)
        if failures:
            tx.hdel(self.failures, *failures)

    async def _commit_one_by_one(self, batch: _Batch) -> None:
        delivered = {(d.stream, d.entry_id) for d in batch.deliveries}
        rest = {
            s: [e for e in ids if (self.keys.kind_of(s), e) not in delivered]
            for s, ids in batch.acks.items()
        }
        await self._commit([], batch.dead, {s: ids for s, ids in rest.items() if ids})
        for delivery in batch.deliveries:
            await self._commit_single(delivery)

    async def _commit_single(self, delivery: Delivery) -> None:
        stream = self.keys.stream(delivery.stream, self.partition)
        try:
            await self._commit([delivery], [], {stream: [delivery.entry_id]})
        except WatchError as error:
            self._fenced(1, error)
        except Exception as error:
            if is_transient(error):
                raise
            await self._record_failure(delivery, stream, error)

    async def _record_failure(self, delivery: Delivery, stream: str, error: Exception) -> None:
        failures = await self.redis.hincrby(self.failures, f"{stream}/{delivery.entry_id}", 1)
        if failures < self.settings.consumer_max_attempts:
            log.warning(
                "%s: %s %s failed (%d/%d): %r",
                self.group,
                stream,
                delivery.entry_id,
                failures,
                self.settings.consumer_max_attempts,
                error,
            )
            self._reread_pending = True
            return
        fields = {k: str(v) for k, v in delivery.event.model_dump(mode="json").items()}
        reason = f"handler failed {failures} times: {error!r}"
        letter = self._dead_letter(stream, delivery.entry_id, fields, reason)
        await self._commit([], [letter], {stream: [delivery.entry_id]})

    def _fenced(self, size: int, error: WatchError) -> int:
        """The commit was refused: the fence moved (another consumer took the batch over),
        or, on a cluster, the connection failed while watching (redis-py raises
        WatchError then too, even if EXEC ran). Either way re-reading the pending entries
        is right: what committed is acked, so only what did not comes back.
        """
        log.warning("%s: commit of a batch of %d refused (%s); dropped it", self.group, size, error)
        self.summary.fenced_batches += 1
        self._reread_pending = True
        return 0

    def _count(self, deliveries: Sequence[Delivery], dead: Sequence[DeadLetter]) -> None:
        self.summary.handled += len(deliveries)
        self.summary.dead_lettered += len(dead)
        for kind, count in Counter(d.stream.value for d in deliveries).items():
            CONSUMED.labels(self.group, kind).inc(count)
        for letter in dead:
            DEAD_LETTERED.labels(self.group, self.keys.kind_of(letter.stream).value).inc()

    async def _until_connected(self, stop: asyncio.Event, action: Any) -> None:
        """Run ``action`` once, retrying with capped backoff while Redis is unreachable."""
        await until_connected(action, self._unreachable, stop=stop)

    def _unreachable(self, error: Exception, delay_s: float) -> None:
        if isinstance(error, MaxConnectionsError):
            log.error(
                "%s: the Redis connection pool is full (%s): raise REDIS_MAX_CONNECTIONS "
                "(each partition's blocking read holds one); retrying in %.1f s",
                self.group,
                error,
                delay_s,
            )
        else:
            log.warning(
                "%s: Redis unreachable (%s); retrying in %.1f s", self.group, error, delay_s
            )
        self.summary.reconnects += 1
        self._reread_pending = True


async def _unless_stopped(read: Awaitable[Any], stop: asyncio.Event) -> Any:
    """``await read``, or None as soon as ``stop`` is set (the read is then cancelled)."""
    reading = asyncio.ensure_future(read)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not reading.done():
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
    return reading.result() if not reading.cancelled() else None
