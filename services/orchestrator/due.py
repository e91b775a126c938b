"""Which held channels need a tick: one script call per partition each look, not a tick per channel.

A tick reads a channel's lifecycle, scores its ended segments and decides when its
slot is due. Most looks (every ``LOOP_INTERVAL_S``) find nothing to do for most
channels, so the loop asks first, one :data:`DUE` call per partition (one slot, see
:mod:`shared.slot_groups`), which of them moved on since their last tick:

* the lifecycle changed: its member count differs (the set is never trimmed, so a
  stream start or end or an activity change always raises it);
* a segment waits to be scored and the clock reached the event time it is ready
  (:meth:`shared.rewards.SegmentScorer.ready_at`);
* the channel is live and its decision slot is due: no slot yet, a slot of another
  stream, or the clock ``DECISION_INTERVAL_S`` past the last slot (the rule of the
  loop's own ``CLAIM_SLOT``, which still decides: a tick found due here claims first).

The script reads only each channel's lifecycle count and clock; the rest is what
the loop's last tick of the channel saw, kept in memory (:class:`Seen`: its live
stream, its slot as the claim returned it, when a segment is ready). A slot another
replica claimed meanwhile only costs a tick whose claim is refused (and which learns
the slot). A channel the loop knows nothing of is due: a fresh replica, a channel
just taken over or a tick that failed ticks at the next look.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from shared.keys import Keys
from shared.slot_groups import per_group

DUE = """
-- KEYS: per channel its lifecycle and its clock (two keys each, all of one slot).
-- Returns per channel its lifecycle member count and its clock (ms, 0 before any event).
local reply = {}
for c = 1, #KEYS, 2 do
  reply[c] = redis.call('ZCARD', KEYS[c])
  reply[c + 1] = tonumber(redis.call('ZSCORE', KEYS[c + 1], 'now') or '0')
end
return reply
"""


@dataclass(frozen=True)
class Seen:
    """What the last tick of a channel left: its live stream ('' when not live), its decision
    slot (event time ms and stream, as the on-air hash holds them) and when a waiting
    segment is ready (event time ms; None when none waits)."""

    live_stream: str = ""
    slot_ms: int | None = None
    slot_stream: str = ""
    ready_ms: float | None = None

    def due_at(self, now_ms: int, interval_ms: int) -> bool:
        """True when, with the clock at ``now_ms``, a waiting segment is ready or the live
        stream's slot is due (the rule of the loop's ``CLAIM_SLOT``)."""
        if self.ready_ms is not None and now_ms >= self.ready_ms:
            return True
        if not self.live_stream:
            return False
        if self.slot_ms is None or self.slot_stream != self.live_stream:
            return True
        return now_ms - self.slot_ms >= interval_ms


class DueChannels:
    """The due check of one replica's loop (see module doc)."""

    def __init__(self, redis: Redis, keys: Keys, interval_ms: int) -> None:
        self.keys = keys
        self.interval_ms = interval_ms
        self._due = redis.register_script(DUE)
        self._counts: dict[str, int] = {}
        self._seen: dict[str, Seen] = {}
        self._keys: dict[str, tuple[bytes, bytes]] = {}

    async def due(self, channels: list[str]) -> list[str]:
        """The channels of ``channels`` that need a tick now (their counts noted as seen);
        one call per partition: a partition's keys share its hash tag."""
        by_partition: dict[int, list[str]] = {}
        for channel in channels:
            by_partition.setdefault(self.keys.partitions.of(channel), []).append(channel)
        replies = await per_group(by_partition.values(), self._due_in)
        return [channel for due in replies for channel in due]

    def after_tick(self, channel: str, seen: Seen) -> None:
        """Record what a tick of ``channel`` found."""
        self._seen[channel] = seen

    def forget(self, channel: str) -> None:
        """Know nothing of ``channel``: it is due at the next look (a failed tick, a lease
        lost or taken)."""
        self._counts.pop(channel, None)
        self._seen.pop(channel, None)

    async def _due_in(self, group: list[str]) -> list[str]:
        """One :data:`DUE` call for ``group`` (channels of one partition)."""
        keys = [key for channel in group for key in self._channel_keys(channel)]
        flat = await self._due(keys=keys)
        due = []
        for channel, count, now in zip(group, flat[::2], flat[1::2], strict=True):
            seen = self._seen.get(channel)
            if (
                seen is None
                or self._counts.get(channel) != count
                or seen.due_at(now, self.interval_ms)
            ):
                due.append(channel)
            self._counts[channel] = count
        return due

    def _channel_keys(self, channel: str) -> tuple[bytes, bytes]:
        """Lifecycle and clock of ``channel``, encoded once (a look sends them all)."""
        if channel not in self._keys:
            analytics = self.keys.analytics(channel)
            self._keys[channel] = (analytics.lifecycle.encode(), analytics.clock.encode())
        return self._keys[channel]
