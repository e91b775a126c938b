"""The analytics stream handler: each event becomes commutative writes on raw channel state.

Every write here commutes (set members, counters, maxima, and paid records set
once with their minute totals counted only then), so the raw state after
a set of events is the same whatever order or batches they arrived in, and the
consumer runner commits these writes with the XACKs, exactly once. A batch's
writes are merged and applied by one script call (``services.analytics.writes``). Figures are
derived from that state afterwards (``services.analytics.metrics``), which is why
a ``kill -9`` at any instant and a restart end with the figures of an
uninterrupted run.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence

from prometheus_client import Counter as PromCounter
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript

from services.analytics.writes import BatchWrites, PaidKeys, PaidWrite
from shared.clock import epoch_ms, utc_now
from shared.consumer import Delivery
from shared.events import (
    ActivityChangedEvent,
    BitsEvent,
    ChatEvent,
    DeadLetter,
    DonationEvent,
    EventBase,
    FollowEvent,
    RaidEvent,
    StreamEndedEvent,
    StreamStartedEvent,
    SubEvent,
    ViewerCountEvent,
    dead_letter_fields,
    to_fields,
)
from shared.keys import AnalyticsKeys, Keys
from shared.readmodel.lifecycle import lifecycle_member
from shared.readmodel.paid_sums import bucket_increments

GROUP = "analytics"
UNKNOWN_CHANNEL = PromCounter(
    "streamloop_analytics_unknown_channel_total",
    "Entries dead-lettered because their channel is not in CHANNELS.",
    ["stream"],
)


def ts_ms(event: EventBase) -> int:
    """The event's ``ts`` as integer epoch milliseconds."""
    return epoch_ms(event.ts)


def member(event: EventBase) -> str:
    """A set member unique to this event: ``{source}:{id}``."""
    return f"{event.source}:{event.id}"


def write_chat(w: BatchWrites, keys: AnalyticsKeys, event: ChatEvent) -> None:
    """Chat: trailing windows, per-second count, per-minute messages per chatter."""
    at = ts_ms(event)
    w.zadd(keys.chat_window, member(event), at)
    w.zadd_max(keys.chatter_window, event.user, at)
    w.hincrby(keys.chat_per_s, str(at // 1000), 1)
    w.zincrby(keys.chatter_minutes, f"{at // 60_000:010d}|{event.user}", 1)


def write_paid(
    w: BatchWrites, keys: AnalyticsKeys, event: DonationEvent | BitsEvent | SubEvent
) -> None:
    """Donations, bits and subs: each kept whole, indexed by time, and counted in its minute.

    The minute totals let sums over long ranges skip the records (``shared.readmodel.paid_sums``).
    """
    record = paid_record(event)
    write = PaidWrite(member(event), ts_ms(event), json.dumps(record), bucket_increments(record))
    w.paid(PaidKeys(keys.paid_data, keys.paid, keys.paid_minutes), write)


def paid_record(event: DonationEvent | BitsEvent | SubEvent) -> dict[str, object]:
    """The JSON kept for one paid event (amounts in USD cents)."""
    record: dict[str, object] = {
        "type": event.type,
        "id": event.id,
        "source": event.source,
        "user": event.user,
        "cents": int(event.amount * 100) if event.amount is not None else 0,
        "ts": ts_ms(event),
    }
    if isinstance(event, DonationEvent | BitsEvent):
        record |= {"currency": event.currency, "message": event.message}
    if isinstance(event, BitsEvent):
        record["bits"] = event.bits
    if isinstance(event, SubEvent):
        record |= {"tier": event.tier, "count": event.count, "months": event.months}
    return record


def write_viewers(w: BatchWrites, keys: AnalyticsKeys, event: ViewerCountEvent) -> None:
    """Viewer counts: the series, by time."""
    at = ts_ms(event)
    w.zadd(keys.viewers, f"{at}:{event.count}", at)


def write_lifecycle(
    w: BatchWrites,
    keys: AnalyticsKeys,
    event: StreamStartedEvent | StreamEndedEvent | ActivityChangedEvent,
) -> None:
    """Starts, ends and activity changes: the stream's timeline, by time.

    A start also goes into the lifecycle's index by stream (its first and latest start),
    so a reader of one stream reads a range of the lifecycle, not its whole history.
    """
    record = event.model_dump(
        mode="json",
        include={
            "type",
            "id",
            "source",
            "stream_id",
            "activity",
            "previous",
            "reason",
            "decided_by",
        },
    )
    at = ts_ms(event)
    w.zadd(keys.lifecycle, lifecycle_member(record), at)
    if isinstance(event, StreamStartedEvent):
        w.zadd_min(keys.stream_first_starts, event.stream_id, at)
        w.zadd_max(keys.stream_last_starts, event.stream_id, at)


def write_social(w: BatchWrites, keys: AnalyticsKeys, event: FollowEvent | RaidEvent) -> None:
    """Follows and raids, by time."""
    count = event.count if isinstance(event, RaidEvent) else 1
    w.zadd(keys.social, f"{event.type}|{member(event)}|{event.user}|{count}", ts_ms(event))


WRITERS: dict[type[EventBase], Callable[[BatchWrites, AnalyticsKeys, EventBase], None]] = {
    ChatEvent: write_chat,  # type: ignore[dict-item]
    DonationEvent: write_paid,  # type: ignore[dict-item]
    BitsEvent: write_paid,  # type: ignore[dict-item]
    SubEvent: write_paid,  # type: ignore[dict-item]
    ViewerCountEvent: write_viewers,  # type: ignore[dict-item]
    StreamStartedEvent: write_lifecycle,  # type: ignore[dict-item]
    StreamEndedEvent: write_lifecycle,  # type: ignore[dict-item]
    ActivityChangedEvent: write_lifecycle,  # type: ignore[dict-item]
    FollowEvent: write_social,  # type: ignore[dict-item]
    RaidEvent: write_social,  # type: ignore[dict-item]
}


class MetricsHandler:
    """Queues a batch's raw-state writes, merged into one script call, on the runner's MULTI.

    With ``channels`` given, an entry for any other channel creates no state: it is
    dead-lettered with the reason in the same transaction (the runner acks it there)
    and counted in ``streamloop_analytics_unknown_channel_total``. Ingest refuses
    such events, so one on a stream came from elsewhere (another writer, a replay).
    """

    def __init__(
        self,
        keys: Keys,
        state_ttl_s: int,
        script: AsyncScript | None = None,
        *,
        channels: Sequence[str] | None = None,
        dead_maxlen: int = 100_000,
    ) -> None:
        self.keys = keys
        self.state_ttl_s = state_ttl_s
        self.script = script
        self.channels = frozenset(channels) if channels is not None else None
        self.dead_maxlen = dead_maxlen

    async def handle(self, batch: Sequence[Delivery], tx: Pipeline) -> None:
        """Write every event of ``batch``; advance each channel's clock and version.

        A ``stream_started`` later than the clock's own start starts the channel's
        clock again at its ``ts`` (``shared.keys.AnalyticsKeys.clock``).
        """
        writes = BatchWrites()
        latest: dict[str, int] = {}
        starts: dict[str, int] = {}
        applied: Counter[str] = Counter()
        for delivery in batch:
            event = delivery.event
            if self.channels is not None and event.channel not in self.channels:
                self._dead_letter_foreign(delivery, tx)
                continue
            WRITERS[type(event)](writes, self.keys.analytics(event.channel), event)
            latest[event.channel] = max(latest.get(event.channel, 0), ts_ms(event))
            if isinstance(event, StreamStartedEvent):
                starts[event.channel] = max(starts.get(event.channel, 0), ts_ms(event))
            applied[event.channel] += 1
        for channel, count in applied.items():
            keys = self.keys.analytics(channel)
            self._advance(writes, keys, latest[channel], starts.get(channel), count)
        await writes.queue(tx, self.script)

    def _dead_letter_foreign(self, delivery: Delivery, tx: Pipeline) -> None:
        stream = self.keys.stream(delivery.stream, delivery.partition)
        letter = DeadLetter(
            reason=f"channel {delivery.event.channel!r} is not in CHANNELS: no state kept for it",
            stream=stream,
            entry_id=delivery.entry_id,
            raw=json.dumps(to_fields(delivery.event), ensure_ascii=False),
            group=GROUP,
            ts=utc_now(),
        )
        tx.xadd(
            self.keys.dead(delivery.partition),
            dead_letter_fields(letter),  # type: ignore[arg-type]
            maxlen=self.dead_maxlen,
            approximate=True,
        )
        UNKNOWN_CHANNEL.labels(delivery.stream.value).inc()

    def _advance(
        self, w: BatchWrites, keys: AnalyticsKeys, now_ms: int, started_ms: int | None, count: int
    ) -> None:
        w.clock(keys.clock, now_ms, started_ms)
        w.incrby(keys.version, count)
        for key in keys.all():
            w.expire(key, self.state_ttl_s)


async def apply_events(redis: Redis, keys: Keys, events: Sequence[EventBase]) -> None:
    """Write ``events`` into the raw state directly, in one transaction, bypassing the streams.

    For tools and tests that drive analytics' state by event time (benchmarks, the
    orchestrator's learning test); the service itself only writes through the runner.
    """
    handler = MetricsHandler(keys, state_ttl_s=7 * 86_400)
    deliveries = [Delivery(event.stream, "0-0", event) for event in events]  # type: ignore[arg-type]
    async with redis.pipeline(transaction=True) as tx:
        await handler.handle(deliveries, tx)
        await tx.execute()
