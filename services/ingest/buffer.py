"""The outage buffer: what ingest receives while Redis is down is held, then published in order.

While Redis answers, :meth:`PublishBuffer.submit` publishes at once, so a webhook
is only acknowledged once its events are on a stream. When a publish fails
because Redis is unreachable, the events are kept in memory instead, and every
later submission queues behind them so order is kept; a drain task owned by the
ingest lifespan republishes from the head with capped backoff, removing events
only once Redis has taken them (a batch cut short is published again, which the
publisher's dedupe makes harmless).

The bound is ``INGEST_BUFFER_MAX_EVENTS``. A submission that does not fit raises
:class:`BufferFull` and nothing of it is kept: the webhooks answer 503 with
``Retry-After`` (Twitch and the donation services deliver again), the EventSub
socket drops it with an error in the log. Every overflow is counted in
``streamloop_ingest_buffer_overflow_total{source}``.

Held events are also written to a journal on disk (:mod:`services.ingest.journal`),
so neither a SIGKILL nor a stop with Redis still down loses them: on shutdown
the drain task gets ``INGEST_BUFFER_FLUSH_S`` to empty the buffer, what is still
held stays in the journal, and the next start takes it over and publishes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import Counter, Gauge

from services.ingest.journal import HeldJournal
from shared.events import DeadLetter, EventBase
from shared.publisher import Publisher, PublishResult
from shared.reconnect import until_connected
from shared.redis_client import CONNECTION_ERRORS

log = logging.getLogger("services.ingest.buffer")

DRAIN_BATCH_EVENTS = 1000
"""Events republished per call while draining."""

HELD = Gauge("streamloop_ingest_buffered_events", "Events held while Redis is unreachable.")
BUFFERED = Counter(
    "streamloop_ingest_buffered_total", "Events held for a while before publishing.", ["source"]
)
OVERFLOW = Counter(
    "streamloop_ingest_buffer_overflow_total",
    "Events refused because the outage buffer was full.",
    ["source"],
)
SPILLED = Counter(
    "streamloop_ingest_spilled_total", "Events still held at shutdown, left in the journal."
)


class BufferFull(Exception):
    """The outage buffer cannot take these events; none of them was kept."""


@dataclass
class BufferTotals:
    """What the buffer did over the process's life, for the shutdown summary."""

    buffered: int = 0
    overflowed: int = 0
    spilled: int = 0
    taken_over: int = 0


class PublishBuffer:
    """Publishes through ``publisher`` while Redis answers; holds up to ``max_events`` while not."""

    def __init__(self, publisher: Publisher, max_events: int, spill_dir: Path) -> None:
        self._publisher = publisher
        self.max_events = max_events
        self._journal = HeldJournal(spill_dir)
        self._held: deque[EventBase] = deque()
        self._waiting = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._down_since: float | None = None
        self.totals = BufferTotals()

    @property
    def held(self) -> int:
        """Events waiting for Redis now."""
        return len(self._held)

    async def submit(self, events: Sequence[EventBase], source: str) -> PublishResult | None:
        """Publish ``events`` now, or hold them if Redis is unreachable (then ``None``).

        Raises :class:`BufferFull`, keeping none of them, when they do not fit.
        """
        if not self._held:
            try:
                return await self._publisher.publish_many(events)
            except CONNECTION_ERRORS as error:
                self._note_outage(error)
        self._hold(events, source)
        return None

    async def dead_letter(self, letter: DeadLetter) -> None:
        """Write ``letter`` to ``events:dead``; while Redis is unreachable, log it instead."""
        try:
            await self._publisher.dead_letter(letter)
        except CONNECTION_ERRORS as error:
            log.error("could not dead-letter (%s): %s; raw %s", error, letter.reason, letter.raw)

    def _hold(self, events: Sequence[EventBase], source: str) -> None:
        if len(self._held) + len(events) > self.max_events:
            OVERFLOW.labels(source).inc(len(events))
            self.totals.overflowed += len(events)
            raise BufferFull(
                f"the outage buffer holds {len(self._held)} of {self.max_events} events "
                f"while Redis is unreachable; {len(events)} more do not fit"
            )
        self._journal_append(events)
        self._held.extend(events)
        BUFFERED.labels(source).inc(len(events))
        self.totals.buffered += len(events)
        self._mark_waiting()

    def _journal_append(self, events: Sequence[EventBase]) -> None:
        try:
            self._journal.append(events)
        except OSError as error:
            log.error(
                "cannot write %s (%s): these events are held in memory only",
                self._journal.path,
                error,
            )

    def _mark_waiting(self) -> None:
        HELD.set(len(self._held))
        self._idle.clear()
        self._waiting.set()

    def take_over_journals(self) -> int:
        """Hold the events journaled by processes that died holding them; how many.

        Call at start, before any source submits, so they are published first.
        """
        events = self._journal.take_over()
        if events:
            self._held.extendleft(reversed(events))
            self.totals.taken_over += len(events)
            self._mark_waiting()
        return len(events)

    def _note_outage(self, error: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.error("Redis unreachable (%s); holding events until it answers again", error)

    async def run(self, stop: asyncio.Event, flush_s: float) -> None:
        """Drain until ``stop`` is set, then for up to ``flush_s`` more; spill the rest."""
        draining = asyncio.create_task(self._drain_forever())
        try:
            await stop.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout=flush_s)
        finally:
            draining.cancel()
            await asyncio.gather(draining, return_exceptions=True)
            self._keep_journal()

    async def _drain_forever(self) -> None:
        while True:
            await self._waiting.wait()
            await until_connected(self._publish_head, self._unreachable)

    def _unreachable(self, error: Exception, delay_s: float) -> None:
        self._note_outage(error)
        log.warning("still holding %d events: %s; retry in %.1f s", self.held, error, delay_s)

    async def _publish_head(self) -> None:
        """Publish the oldest held events, then forget them; mark the buffer idle when empty."""
        batch = [self._held[n] for n in range(min(DRAIN_BATCH_EVENTS, len(self._held)))]
        await self._publisher.publish_many(batch)
        for _ in batch:
            self._held.popleft()
        HELD.set(len(self._held))
        if not self._held:
            self._waiting.clear()
            self._idle.set()
            self._journal.discard()
            self._note_recovery()

    def _note_recovery(self) -> None:
        if self._down_since is not None:
            log.info(
                "Redis answers again: every held event published (outage seen for %.1f s)",
                time.monotonic() - self._down_since,
            )
            self._down_since = None

    def _keep_journal(self) -> None:
        """Leave what is still held in the journal for the next start to publish."""
        if not self._held:
            self._journal.discard()
            return
        self._journal.keep()
        count = len(self._held)
        SPILLED.inc(count)
        self.totals.spilled += count
        self._held.clear()
        HELD.set(0)
        log.error(
            "Redis still unreachable at shutdown: %d events kept in %s; the next ingest start "
            "publishes them (or `python -m services.ingest replay %s --speed 0`)",
            count, self._journal.path, self._journal.path,
        )  # fmt: skip
