"""The consumer runner's counts: its Prometheus metrics, the lag gauge's reading, and
the summary of a runner's life."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge

from shared.keys import Stream
from shared.reclaim import StreamState

CONSUMED = Counter(
    "streamloop_events_consumed_total", "Entries handled and acked.", ["group", "stream"]
)
DEAD_LETTERED = Counter(
    "streamloop_dead_letters_total", "Entries sent to events:dead.", ["group", "stream"]
)
LAG = Gauge(
    "streamloop_consumer_lag",
    "Entries not yet read by the group, per partition's stream.",
    ["group", "stream", "partition"],
)


def record_lag(group: str, kind: Stream, partition: int, state: StreamState) -> None:
    """Set the LAG gauge of one stream from what a reclaim round read of it.

    ``lag`` comes from XINFO GROUPS, 0 when no entry follows the last delivered id.
    Redis estimates ``lag`` from counters, and after a Redis Cluster failover the
    promoted replica's estimate stayed off (22 with nothing left to read, measured
    on 7.0): the gauge would show a stuck consumer. An entry after
    ``last-delivered-id`` is what lag really means, so its absence (the stream's
    newest entry is not after it) wins. Nothing is set when Redis gives no estimate.
    """
    info = state.group
    if info is None or info.get("lag") is None:
        return
    lag = info["lag"]
    if lag and not _after(state.newest_id, info["last-delivered-id"]):
        lag = 0
    LAG.labels(group, kind.value, str(partition)).set(lag)


def _after(entry_id: str | None, other: str) -> bool:
    """Whether stream entry id ``entry_id`` (None: no entry) comes after ``other``."""
    return entry_id is not None and _id_key(entry_id) > _id_key(other)


def _id_key(entry_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)


@dataclass
class RunSummary:
    """Counts of one runner's life, logged in one line when it stops."""

    handled: int = 0
    dead_lettered: int = 0
    claimed: int = 0
    fenced_batches: int = 0
    reconnects: int = 0
    started: float = field(default_factory=time.monotonic)

    def line(self, group: str, consumer: str) -> str:
        """The one-line summary printed at shutdown."""
        elapsed = time.monotonic() - self.started
        return (
            f"consumer {group}/{consumer} stopped after {elapsed:.1f} s: "
            f"{self.handled} handled, {self.dead_lettered} dead-lettered, "
            f"{self.claimed} claimed from dead consumers, {self.fenced_batches} batches "
            f"dropped after a takeover, {self.reconnects} reconnects"
        )
