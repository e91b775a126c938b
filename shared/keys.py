"""Every Redis key name streamloop uses, in one place.

No other module spells a key string: services build names through :class:`Keys`,
which also applies the optional deployment prefix (``REDIS_KEY_PREFIX``) so that
several deployments, or a test run, can share one Redis server without touching
each other's data. ``docs/redis-schema.md`` documents every name here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from shared.partitions import Partitions, tag


class Stream(StrEnum):
    """The kinds of stream; the Redis key is ``events:{pNN}:<kind>``, one per partition."""

    CHAT = "chat"
    DONATION = "donation"
    SUB = "sub"
    VIEWERS = "viewers"
    LIFECYCLE = "lifecycle"
    DEAD = "dead"


EVENT_STREAMS: tuple[Stream, ...] = (
    Stream.CHAT,
    Stream.DONATION,
    Stream.SUB,
    Stream.VIEWERS,
    Stream.LIFECYCLE,
)
"""Streams that carry events (everything but the dead-letter stream)."""

STREAM_PREFIX = "events:"
DEDUPE_PREFIX = "dedupe:"
CONSUMER_PREFIX = "consumer:"
METRICS_PREFIX = "metrics:"
ANALYTICS_PREFIX = "analytics:"
ORCHESTRATOR_PREFIX = "orchestrator:"
DECISIONS_PREFIX = "decisions:"
RETRO_PREFIX = "retro:"
RETRO_INDEX_PREFIX = "retros:"
BANDIT_PREFIX = "bandit:"
LEASE_PREFIX = "lease:"
REPLICAS_PREFIX = "replicas:"


STREAM_KINDS = frozenset(kind.value for kind in Stream)
TAG_PATTERN = re.compile(r"\{p(\d+)\}")


class Keys:
    """Key names for one deployment, all under ``prefix`` (empty by default).

    Every key that belongs to a channel or a partition carries the partition's hash
    tag (``{p07}``, see :mod:`shared.partitions`), so on Redis Cluster all keys of a
    partition share one slot and every script, transaction and multi-stream read
    touches one node. Per-channel helpers derive the tag from the channel; stream
    helpers take the partition. The same names serve a single server.
    """

    def __init__(self, prefix: str = "", partitions: Partitions | None = None) -> None:
        self.prefix = prefix
        self.partitions = partitions or Partitions()
        self._streams: dict[str, tuple[int, str]] = {}  # parsed stream keys (valid ones only)

    def tag_of(self, channel: str) -> str:
        """The hash tag of ``channel``'s partition, e.g. ``{p07}``."""
        return tag(self.partitions.of(channel))

    def stream(self, kind: Stream | str, partition: int) -> str:
        """Key of a partition's stream, e.g. ``events:{p07}:chat``."""
        return f"{self.prefix}{STREAM_PREFIX}{tag(partition)}:{Stream(kind).value}"

    def channel_stream(self, kind: Stream | str, channel: str) -> str:
        """Key of the stream ``kind`` that ``channel``'s events go on."""
        return self.stream(kind, self.partitions.of(channel))

    def partition_streams(self, partition: int) -> list[str]:
        """Keys of a partition's event streams (not its dead-letter stream)."""
        return [self.stream(kind, partition) for kind in EVENT_STREAMS]

    def event_streams(self) -> list[str]:
        """Keys of every event stream of every partition (not the dead-letter streams)."""
        return [key for p in self.partitions.all() for key in self.partition_streams(p)]

    def dead(self, partition: int) -> str:
        """Key of a partition's dead-letter stream ``events:{pNN}:dead``."""
        return self.stream(Stream.DEAD, partition)

    def channel_dead(self, channel: str) -> str:
        """Key of the dead-letter stream of ``channel``'s partition."""
        return self.dead(self.partitions.of(channel))

    def dead_streams(self) -> list[str]:
        """Keys of every partition's dead-letter stream."""
        return [self.dead(p) for p in self.partitions.all()]

    def kind_of(self, stream_key: str) -> Stream:
        """The :class:`Stream` a stream key names (inverse of :meth:`stream`)."""
        return Stream(self._split_stream(stream_key)[1])

    def partition_of_stream(self, stream_key: str) -> int:
        """The partition a stream key belongs to (inverse of :meth:`stream`)."""
        return self._split_stream(stream_key)[0]

    def _split_stream(self, stream_key: str) -> tuple[int, str]:
        """(partition, kind) of a stream key of this deployment, exactly as :meth:`stream`
        spells it; anything else (another prefix, a partition past ``PARTITIONS``, another
        spelling of the tag) raises ``ValueError``. A key parsed once is remembered (at most
        one per partition and kind): consumers ask for every entry they read."""
        if (known := self._streams.get(stream_key)) is not None:
            return known
        head = f"{self.prefix}{STREAM_PREFIX}"
        tag_part, _, kind = stream_key.removeprefix(head).partition(":")
        match = TAG_PATTERN.fullmatch(tag_part)
        if stream_key.startswith(head) and match is not None and kind in STREAM_KINDS:
            partition = int(match.group(1))
            if partition < self.partitions.count and self.stream(kind, partition) == stream_key:
                self._streams[stream_key] = (partition, kind)
                return partition, kind
        raise ValueError(
            f"{stream_key!r} is not a stream key of this deployment "
            f"({head}{{pNN}}:<kind>, pNN below {self.partitions.count})"
        )

    def dedupe(self, source: str, event_id: str, channel: str) -> str:
        """Marker that a ``source`` + ``id`` pair was published (``dedupe:{pNN}:{source}:{id}``).

        It carries the tag of the event's channel, so the publish script's marker and
        stream share one slot.
        """
        return f"{self.prefix}{DEDUPE_PREFIX}{self.tag_of(channel)}:{source}:{event_id}"

    def consumer_fence(self, group: str, consumer: str, partition: int) -> str:
        """Counter bumped before another consumer claims ``consumer``'s pending entries.

        The owner watches it while committing a batch of the partition, so a batch
        whose entries were claimed meanwhile is never applied twice.
        """
        return f"{self.prefix}{CONSUMER_PREFIX}{tag(partition)}:{group}:{consumer}:fence"

    def consumer_failures(self, group: str, partition: int) -> str:
        """Hash ``{stream}/{entry_id}`` -> handler failures so far, for dead-lettering."""
        return f"{self.prefix}{CONSUMER_PREFIX}{tag(partition)}:{group}:failures"

    def partition_lease(self, group: str, partition: int) -> str:
        """String: the replica of ``group`` working ``partition`` now, with a TTL it renews."""
        return f"{self.prefix}{LEASE_PREFIX}{tag(partition)}:{group}"

    def replicas(self, group: str) -> str:
        """Sorted set replica -> last heartbeat (server time, ms) of ``group``'s live replicas."""
        return f"{self.prefix}{REPLICAS_PREFIX}{group}"

    def metrics(self, channel: str) -> str:
        """Live metrics hash of a channel, kept by analytics (``metrics:{pNN}:{channel}``)."""
        return f"{self.prefix}{METRICS_PREFIX}{self.tag_of(channel)}:{channel}"

    def twitch_webhook_message(self, message_id: str) -> str:
        """Marker that a Twitch EventSub webhook message id was published (SET, with a TTL).

        Twitch redelivers a message with the same id; the marker makes a redelivery a no-op.
        It is written after the publish, never before (see ``services.ingest.webhooks.twitch``).
        No tag: the channel is not known before the body is checked.
        """
        return f"{self.prefix}webhook:twitch:{message_id}"

    def analytics(self, channel: str) -> AnalyticsKeys:
        """The raw per-channel state analytics keeps (see :class:`AnalyticsKeys`)."""
        return AnalyticsKeys(f"{self.prefix}{ANALYTICS_PREFIX}{self.tag_of(channel)}:{channel}:")

    def orchestrator_lease(self, channel: str) -> str:
        """String: the replica deciding ``channel`` now, with a TTL it renews."""
        return f"{self.prefix}{ORCHESTRATOR_PREFIX}{self.tag_of(channel)}:lease:{channel}"

    def orchestrator_replicas(self) -> str:
        """Sorted set replica -> last heartbeat (wall-clock ms), for sharing channels fairly."""
        return f"{self.prefix}{ORCHESTRATOR_PREFIX}replicas"

    def orchestrator_on_air(self, channel: str) -> str:
        """Hash: the orchestrator's latest decision slot (``at_ms``) and what it put on air.

        Fields ``at_ms`` (event time of the last decision) and ``slot_stream`` (its
        stream), ``activity``, ``since_ms`` (when that activity went on air),
        ``chosen_ms`` (when it was last chosen, kept or switched to: a choice holds
        ``MIN_SEGMENT_S``) and ``stream_id``.
        """
        return f"{self.prefix}{ORCHESTRATOR_PREFIX}{self.tag_of(channel)}:on_air:{channel}"

    def decisions(self, channel: str) -> str:
        """Stream of every decision for ``channel``: arm chosen, suggestion, decider, reason."""
        return f"{self.prefix}{DECISIONS_PREFIX}{self.tag_of(channel)}:{channel}"

    def bandit(self, channel: str) -> str:
        """Hash: the activity bandit's Beta posteriors for ``channel`` (``bandit:{pNN}:{channel}``).

        Fields ``{arm}:alpha`` and ``{arm}:beta`` (floats), ``{arm}:updates`` and
        ``updates`` (counts); kept by :class:`shared.bandit.ThompsonBandit`, no TTL.
        """
        return f"{self.prefix}{BANDIT_PREFIX}{self.tag_of(channel)}:{channel}"

    def bandit_applied(self, channel: str, token: str) -> str:
        """Marker that the bandit update keyed ``token`` (a segment id) was applied (SET NX + TTL).

        ``bandit:{pNN}:{channel}:applied:{token}``; makes a retried or concurrent update a no-op.
        """
        return f"{self.bandit(channel)}:applied:{token}"

    def bandit_rewards(self, channel: str) -> str:
        """Hash token (a segment id) -> the reward ``update_once`` applied with it.

        ``bandit:{pNN}:{channel}:rewards``; written in the same script as the update, so
        the retro report can show the rewards the orchestrator applied online.
        """
        return f"{self.bandit(channel)}:rewards"

    def retro(self, channel: str, stream_id: str) -> str:
        """Hash: the post-stream report of ``stream_id`` (``retro:{pNN}:{channel}:{stream_id}``).

        Fields ``markdown``, ``html``, ``report`` (JSON), ``ended``, ``ended_ms``,
        ``complete``; ``bandit_before`` (the bandit before the stream, written first)
        and ``printed`` (who printed it); kept by the retro worker, no TTL.
        """
        return f"{self.prefix}{RETRO_PREFIX}{self.tag_of(channel)}:{channel}:{stream_id}"

    def retro_index(self, channel: str) -> str:
        """Sorted set stream_id -> end time (epoch ms): every report of ``channel``.

        ``retros:{pNN}:{channel}`` (a prefix of its own, so no stream id can collide with it).
        """
        return f"{self.prefix}{RETRO_INDEX_PREFIX}{self.tag_of(channel)}:{channel}"

    def all_pattern(self) -> str:
        """SCAN pattern matching every key of this deployment (only sensible with a prefix)."""
        return f"{self.prefix}*"


@dataclass(frozen=True)
class AnalyticsKeys:
    """Raw, order-independent state of one channel, from which every figure is derived.

    Every write to these keys commutes (set adds, counters, maxima), so the state
    after a set of events does not depend on the order or batching they arrived in.
    """

    base: str

    @property
    def clock(self) -> str:
        """Sorted set: ``now``, the channel's event-time "now" (ms), and ``started``, the
        ``ts`` of the ``stream_started`` its clock began with.

        The clock belongs to the current stream: ``now`` is the largest ``ts`` seen since
        the latest ``stream_started`` (ZADD GT), and a ``stream_started`` later than
        ``started`` sets both to its ``ts``, even below the old ``now``, so a stream that
        ran ahead of the wall clock (a sped-up simulation, a replay) never freezes the
        next one. Windows and rates are measured back from ``now``.
        """
        return f"{self.base}clock"

    @property
    def version(self) -> str:
        """Counter: events applied so far; derived figures record the version they saw."""
        return f"{self.base}version"

    @property
    def chat_window(self) -> str:
        """Sorted set ``{source}:{id}`` by ``ts`` ms: chat of the trailing window."""
        return f"{self.base}chat_window"

    @property
    def chatter_window(self) -> str:
        """Sorted set user by last ``ts`` ms: chatters of the trailing window."""
        return f"{self.base}chatter_window"

    @property
    def chat_per_s(self) -> str:
        """Hash epoch second -> chat messages in that second."""
        return f"{self.base}chat_per_s"

    @property
    def chatter_minutes(self) -> str:
        """Sorted set ``{epoch minute:010d}|{user}`` -> messages that user sent that minute."""
        return f"{self.base}chatter_minutes"

    @property
    def paid(self) -> str:
        """Sorted set ``{source}:{id}`` by ``ts`` ms: every donation, bits cheer and sub."""
        return f"{self.base}paid"

    @property
    def paid_data(self) -> str:
        """Hash ``{source}:{id}`` -> JSON of that paid event."""
        return f"{self.base}paid_data"

    @property
    def paid_minutes(self) -> str:
        """Hash ``{epoch minute}:{total}`` and ``h{epoch hour}:{total}`` -> paid totals.

        Integer totals of that minute's (hour's) paid events: ``events``,
        ``donation_cents``, ``bits_cents``, ``sub_cents`` (USD cents), ``bits`` (bits
        cheered), ``subs`` (sub counts of sub/resub/gift). Incremented in the same
        script that adds an event to ``paid_data``, and only when that adds it, so
        each bucket equals the sum of its raw records. Sums over long ranges read
        these instead of every record (``shared.readmodel.paid_sums``).
        """
        return f"{self.base}paid_minutes"

    @property
    def viewers(self) -> str:
        """Sorted set ``{ts ms}:{count}`` by ``ts`` ms: the viewer count series."""
        return f"{self.base}viewers"

    @property
    def lifecycle(self) -> str:
        """Sorted set of JSON lifecycle events (start, end, activity) by ``ts`` ms."""
        return f"{self.base}lifecycle"

    @property
    def social(self) -> str:
        """Sorted set ``{type}|{source}:{id}|{user}|{count}`` by ``ts`` ms: follows and raids."""
        return f"{self.base}social"

    def all(self) -> list[str]:
        """Every key above."""
        return [
            getattr(self, name)
            for name in (
                "clock",
                "version",
                "chat_window",
                "chatter_window",
                "chat_per_s",
                "chatter_minutes",
                "paid",
                "paid_data",
                "paid_minutes",
                "viewers",
                "lifecycle",
                "social",
                "stream_first_starts",
                "stream_last_starts",
            )
        ]

    @property
    def stream_first_starts(self) -> str:
        """Sorted set stream_id by the ``ts`` ms of its first ``stream_started`` (ZADD LT).

        The lifecycle's index by stream, written in the same script as the lifecycle:
        a stream's entries start there, so a read of one stream is a range of the
        lifecycle, not all of it (``shared.readmodel.lifecycle.READ_STREAM``).
        """
        return f"{self.base}stream_first_starts"

    @property
    def stream_last_starts(self) -> str:
        """Sorted set stream_id by the ``ts`` ms of its latest ``stream_started`` (ZADD GT).

        A later start of the same id (a reconnect) makes the stream live again; past its
        latest start, the stream's own ``stream_ended`` or another stream's start ends it.
        """
        return f"{self.base}stream_last_starts"
