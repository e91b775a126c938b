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

What the loop knows of a channel (the member count it saw, its live stream, when a
segment is ready) is in memory. A channel it knows nothing of is due: a fresh
replica, a channel just taken over or a tick that failed ticks at the next look.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from shared.keys import Keys
from shared.slot_groups import group_by_tag, per_group

DUE = """
-- KEYS: per channel its clock, lifecycle and on-air hash (three keys each, one slot).
-- ARGV[1]: the decision interval ms; then per channel: the lifecycle member count last
--   seen ('' unknown), its live stream id ('' not live), the event time ms a waiting
--   segment is ready at ('' none).
-- Returns, for each channel due, its index (from 0) and its lifecycle member count.
local interval = tonumber(ARGV[1])
local due = {}
for c = 0, #KEYS / 3 - 1 do
  local clock, lifecycle, on_air = KEYS[3 * c + 1], KEYS[3 * c + 2], KEYS[3 * c + 3]
  local seen, live, ready = ARGV[3 * c + 2], ARGV[3 * c + 3], ARGV[3 * c + 4]
  local count = redis.call('ZCARD', lifecycle)
  local is_due = seen == '' or tonumber(seen) ~= count
  if not is_due and (ready ~= '' or live ~= '') then
    local now = tonumber(redis.call('ZSCORE', clock, 'now') or '0')
    is_due = ready ~= '' and now >= tonumber(ready)
    if not is_due and live ~= '' then
      local slot = redis.call('HMGET', on_air, 'at_ms', 'slot_stream')
      is_due = (not slot[1]) or slot[2] ~= live or now - tonumber(slot[1]) >= interval
    end
  end
  if is_due then
    due[#due + 1] = c
    due[#due + 1] = count
  end
end
return due
"""


@dataclass(frozen=True)
class Seen:
    """What the last tick of a channel left: its live stream ('' when not live) and when a
    waiting segment is ready (event time ms; None when none waits)."""

    live_stream: str = ""
    ready_ms: float | None = None


class DueChannels:
    """The due check of one replica's loop (see module doc)."""

    def __init__(self, redis: Redis, keys: Keys, interval_ms: int) -> None:
        self.keys = keys
        self.interval_ms = interval_ms
        self._due = redis.register_script(DUE)
        self._counts: dict[str, int] = {}
        self._seen: dict[str, Seen] = {}
        self._keys: dict[str, tuple[str, str, str]] = {}

    async def due(self, channels: list[str]) -> list[str]:
        """The channels of ``channels`` that need a tick now (their counts noted as seen)."""
        groups = group_by_tag(channels, self.keys.orchestrator_on_air)
        replies = await per_group(groups, self._due_in)
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
        keys: list[str] = []
        args: list[Any] = [self.interval_ms]
        for channel in group:
            keys.extend(self._channel_keys(channel))
            seen = self._seen.get(channel, Seen())
            ready = "" if seen.ready_ms is None else int(seen.ready_ms)
            args.extend((self._counts.get(channel, ""), seen.live_stream, ready))
        flat = await self._due(keys=keys, args=args)
        due = []
        for index, count in zip(flat[::2], flat[1::2], strict=True):
            channel = group[int(index)]
            self._counts[channel] = int(count)
            due.append(channel)
        return due

    def _channel_keys(self, channel: str) -> tuple[str, str, str]:
        """Clock, lifecycle and on-air hash of ``channel`` (built once)."""
        if channel not in self._keys:
            analytics = self.keys.analytics(channel)
            on_air = self.keys.orchestrator_on_air(channel)
            self._keys[channel] = (analytics.clock, analytics.lifecycle, on_air)
        return self._keys[channel]
