"""Derived figures: the ``metrics:{channel}`` hash, recomputed from the raw channel state.

:func:`recompute` reads a consistent snapshot of the raw state (one Lua script),
including the paid totals of today, the stream and the trailing windows, summed
in Redis from per-minute totals (``shared.readmodel.paid_sums``: O(minutes of the range),
not O(paid events), and exact to the cent), derives every figure (formulas in
``docs/metrics.md``) and writes the hash only if no newer snapshot was written
meanwhile (compare-and-set on the state version), so replicas recomputing at
once never leave an older result behind.
Time is event time: "now" is the largest ``ts`` the channel has seen.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from shared.clock import epoch_ms, format_ts, from_epoch_ms
from shared.keys import AnalyticsKeys, Keys
from shared.readmodel.figures import engagement_score as engagement_score
from shared.readmodel.lifecycle import LATEST_PAGE, LIFECYCLE_LUA, read_latest_lifecycle
from shared.readmodel.lifecycle import StreamState as StreamState
from shared.readmodel.lifecycle import stream_state as stream_state
from shared.readmodel.paid_sums import FOREVER_MS, PAID_SUMS_LUA, PaidSums

log = logging.getLogger("services.analytics.metrics")

HOUR_MS = 3_600_000
MIN_RATE_WINDOW_MS = 60_000
SNAPSHOT_ATTEMPTS = 5
SNAPSHOT = (
    PAID_SUMS_LUA
    + LIFECYCLE_LUA
    + """
-- KEYS: clock, version, chat_window, chatter_window, viewers, lifecycle,
--       paid, paid_data, paid_minutes.
-- ARGV: chat window ms, engagement window ms, today's start and end ms, this stream's
--       start and exclusive end ms ('' without a stream), start of the live stream
--       ('' when not live), the rate window ms and its minimum, the lifecycle page.
-- The lifecycle is read from the latest stream_started on: enough for the stream's
-- state, and as long as that stream, not the channel's history.
local now = tonumber(redis.call('ZSCORE', KEYS[1], 'now'))
if not now then return false end
local chat_from = now - tonumber(ARGV[1])
local engagement_from = now - tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. chat_from)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. engagement_from)
local function sum(lo, hi) return paid_sum(KEYS[7], KEYS[8], KEYS[9], lo, hi) end
local forever = 2 ^ 53  -- paid_sum narrows it to the last paid ts
local stream = {0, 0, 0, 0, 0, 0}
if ARGV[5] ~= '' then
  -- a live stream's money up to its clock: none of a previous stream dated after it
  local stream_end = tonumber(ARGV[6])
  if ARGV[7] ~= '' then stream_end = math.min(stream_end, now + 1) end
  stream = sum(tonumber(ARGV[5]), stream_end)
end
local rate_from = now - tonumber(ARGV[8])
if ARGV[7] ~= '' then
  rate_from = math.max(rate_from, math.min(tonumber(ARGV[7]), now - tonumber(ARGV[9])))
end
return {
  tostring(now),
  redis.call('GET', KEYS[2]) or '0',
  redis.call('ZCOUNT', KEYS[3], '(' .. chat_from, '+inf'),
  redis.call('ZCOUNT', KEYS[4], '(' .. engagement_from, '+inf'),
  redis.call('ZREVRANGE', KEYS[5], 0, 0),
  latest_lifecycle(KEYS[1], KEYS[6], tonumber(ARGV[10])),
  sum(tonumber(ARGV[3]), tonumber(ARGV[4])),
  stream,
  sum(engagement_from + 1, forever),
  sum(rate_from + 1, forever),
}
"""
)
CAS_WRITE = """
-- KEYS: the metrics hash, the channel's version counter. ARGV: the snapshot's version,
-- its fields as one JSON list [field, value, ...] (one argument, not 34: packing them
-- costs the client more).
-- A newer snapshot's figures stay. A hash holding a version past the counter's is from
-- raw state that expired (the counter started again): it is overwritten, and the hash
-- expires with the counter from now on.
local seen = tonumber(redis.call('HGET', KEYS[1], 'version') or '-1')
local counter = tonumber(redis.call('GET', KEYS[2]) or '0')
if seen > tonumber(ARGV[1]) and seen <= counter then return 0 end
redis.call('HSET', KEYS[1], unpack(cjson.decode(ARGV[2])))
local ttl = redis.call('PTTL', KEYS[2])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
"""


@dataclass(frozen=True)
class Windows:
    """Window lengths, in milliseconds of event time."""

    chat_ms: int
    engagement_ms: int


def local_day_ms(now_ms: int, zone: ZoneInfo) -> tuple[int, int]:
    """Start and end (epoch ms) of the calendar day in ``zone`` that contains ``now_ms``."""
    local = from_epoch_ms(now_ms).astimezone(zone)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return epoch_ms(start), epoch_ms(end)


@dataclass(frozen=True)
class Snapshot:
    """The raw figures of one channel at one instant of its event time.

    Paid totals (``shared.readmodel.paid_sums``) of: ``today``, the local calendar day of
    ``now_ms``; ``this_stream``, the current (or last) stream, end included;
    ``recent``, the engagement window ``(now - engagement_ms, now]``; ``rate``, the
    window of :func:`rate_window_ms`, ``(now - rate window, now]``.
    """

    now_ms: int
    version: int
    chat_in_window: int
    chatters_in_window: int
    viewers: int
    stream: StreamState
    today: PaidSums
    this_stream: PaidSums
    recent: PaidSums
    rate: PaidSums

    def plan(self, zone: ZoneInfo) -> Plan:
        """The plan this snapshot's own clock and lifecycle call for."""
        return Plan.of(self.now_ms, self.stream, zone)


@dataclass(frozen=True)
class Plan:
    """The ranges a snapshot sums that Python fixes: they change only with the day or stream.

    ``day``: ``[start, end)`` ms of the local day of "now"; ``stream``: ``[start, end)``
    ms of the current or last stream (end = its ``stream_ended`` + 1, or unbounded),
    None without one; ``live_since``: start ms of the live stream, else None.
    """

    day: tuple[int, int]
    stream: tuple[int, int] | None
    live_since: int | None

    @classmethod
    def of(cls, now_ms: int, stream: StreamState, zone: ZoneInfo) -> Plan:
        """The plan for a snapshot at ``now_ms`` with ``stream`` as its lifecycle says."""
        live_since = stream.started_ms if stream.is_live else None
        return cls(local_day_ms(now_ms, zone), stream_range(stream), live_since)

    def args(self) -> list[int | str]:
        """ARGV[3..7] of :data:`SNAPSHOT`."""
        stream: list[int | str] = list(self.stream) if self.stream else ["", ""]
        live = "" if self.live_since is None else self.live_since
        return [*self.day, *stream, live]


UNKNOWN_PLAN = Plan((0, 0), None, None)
"""The plan a batch tries for a channel it has none for: no day, no stream. Its snapshot
shows the channel's real plan, which the next one uses."""


def stream_range(stream: StreamState) -> tuple[int, int] | None:
    """``[start, end)`` ms of the paid events inside the stream (its end ms included)."""
    if stream.started_ms is None:
        return None
    end = FOREVER_MS if stream.ended_ms is None else stream.ended_ms + 1
    return stream.started_ms, end


class MetricsComputer:
    """Recomputes ``metrics:{channel}`` from the raw state (see module doc)."""

    def __init__(self, redis: Redis, keys: Keys, windows: Windows, zone: ZoneInfo) -> None:
        self.redis = redis
        self.keys = keys
        self.windows = windows
        self.zone = zone
        self._snapshot = redis.register_script(SNAPSHOT)
        self._cas_write = redis.register_script(CAS_WRITE)
        self._plans: dict[str, Plan] = {}

    async def recompute(self, channel: str) -> dict[str, str]:
        """Derive and store the channel's figures; returns them (``{}`` before any event)."""
        snapshot = await self.snapshot(channel)
        if snapshot is None:
            return {}
        figures = derive(snapshot, self.windows, self.zone)
        args = write_args(figures, snapshot.version)
        await self._cas_write(keys=self._write_keys(channel), args=args)
        return figures

    async def recompute_batch(self, channels: Sequence[str]) -> list[str]:
        """Recompute ``channels`` with pipelines: their snapshots, then their writes; the
        channels left to :meth:`recompute` one by one are returned.

        Each snapshot is checked as in :meth:`snapshot`: one that shows another day or
        stream than its plan is taken again, in the next pipeline, with the plan it
        showed. A channel without a kept plan starts from :data:`UNKNOWN_PLAN`, so its
        first snapshot only finds its plan, in a pipeline too (no lifecycle read one
        channel at a time). A ``NOSCRIPT`` reply (a restarted server) loads the scripts
        and takes that snapshot again. Left: a channel whose plan kept changing, and one
        whose reply was another error or whose write failed (:meth:`recompute` reloads a
        script a cluster node lacks). The compare-and-set of each write is unchanged.
        """
        pending, left = list(channels), []
        snapshots: list[tuple[str, Snapshot]] = []
        for _ in range(SNAPSHOT_ATTEMPTS):
            plans = [self._plans.get(c, UNKNOWN_PLAN) for c in pending]
            again, unknown_script = [], False
            for channel, plan, raw in zip(
                pending, plans, await self._read_many(pending, plans), strict=True
            ):
                if isinstance(raw, NoScriptError):
                    unknown_script = True
                    again.append(channel)
                elif isinstance(raw, Exception):
                    left.append(channel)
                elif not raw:
                    self._plans.pop(channel, None)
                elif (seen := (snap := parse_snapshot(raw)).plan(self.zone)) != plan:
                    self._plans[channel] = seen
                    again.append(channel)
                else:
                    snapshots.append((channel, snap))
            pending = again
            if unknown_script:
                await self._load_scripts()
        replies = await self._write_many(snapshots)
        failed = [
            c for (c, _), r in zip(snapshots, replies, strict=True) if isinstance(r, Exception)
        ]
        return left + pending + failed

    async def _read_many(self, channels: list[str], plans: list[Plan]) -> list[Any]:
        """The :data:`SNAPSHOT` replies of ``channels`` with ``plans`` (errors in place).

        Plain EVALSHA: a pipeline given the registered script would first ask Redis
        whether it knows it, one more round trip per batch; a ``NOSCRIPT`` reply is
        rare (a restarted or promoted server) and handled by the caller.
        """
        if not channels:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for channel, plan in zip(channels, plans, strict=True):
                keys = snapshot_keys(self.keys.analytics(channel))
                pipe.evalsha(self._snapshot.sha, len(keys), *keys, *self._args(plan))
            return await pipe.execute(raise_on_error=False)

    async def _write_many(self, snapshots: list[tuple[str, Snapshot]]) -> list[Any]:
        """The compare-and-set writes of the figures of ``snapshots`` (errors in place)."""
        if not snapshots:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for channel, snap in snapshots:
                args = write_args(derive(snap, self.windows, self.zone), snap.version)
                pipe.evalsha(self._cas_write.sha, 2, *self._write_keys(channel), *args)
            return await pipe.execute(raise_on_error=False)

    def _write_keys(self, channel: str) -> list[str]:
        """KEYS of :data:`CAS_WRITE`: the metrics hash and the version counter (one tag)."""
        return [self.keys.metrics(channel), self.keys.analytics(channel).version]

    async def _load_scripts(self) -> None:
        """Load both scripts (after a ``NOSCRIPT``: a restarted server knows none)."""
        await self.redis.script_load(SNAPSHOT)
        await self.redis.script_load(CAS_WRITE)

    async def snapshot(self, channel: str) -> Snapshot | None:
        """One atomic read of the raw state and its paid totals (windows trimmed on the way).

        The day and stream ranges (:class:`Plan`) are those of the channel's previous
        snapshot, or, for its first one here, of a read of the clock and the latest
        stream's lifecycle. If the snapshot shows another day or stream (they changed
        since), it is taken again with the ranges it showed, so the totals always match
        its own state: a plan kept from before only saves the first read while it holds.
        """
        keys = self.keys.analytics(channel)
        plan = self._plans.get(channel) or await self._first_plan(keys)
        for _ in range(SNAPSHOT_ATTEMPTS):
            snap = await self._read(keys, plan)
            if snap is None:
                self._plans.pop(channel, None)
                return None
            seen = snap.plan(self.zone)
            if seen == plan:
                self._plans[channel] = plan
                return snap
            plan = seen
        log.warning("%s: lifecycle changing under every snapshot; figures may lag", channel)
        self._plans.pop(channel, None)
        return snap

    async def _first_plan(self, keys: AnalyticsKeys) -> Plan:
        """The plan of the channel as its clock and latest stream's lifecycle stand now."""
        now_ms, lifecycle = await read_latest_lifecycle(self.redis, keys)
        return Plan.of(now_ms, stream_state(lifecycle), self.zone)

    async def _read(self, keys: AnalyticsKeys, plan: Plan) -> Snapshot | None:
        """One run of :data:`SNAPSHOT` with the ranges of ``plan``."""
        raw = await self._snapshot(keys=snapshot_keys(keys), args=self._args(plan))
        return parse_snapshot(raw) if raw else None

    def _args(self, plan: Plan) -> list[int | str]:
        """ARGV of :data:`SNAPSHOT` for ``plan``."""
        return [
            self.windows.chat_ms,
            self.windows.engagement_ms,
            *plan.args(),
            HOUR_MS,
            MIN_RATE_WINDOW_MS,
            LATEST_PAGE,
        ]


def snapshot_keys(keys: AnalyticsKeys) -> list[str]:
    """KEYS of :data:`SNAPSHOT` for one channel."""
    return [
        keys.clock,
        keys.version,
        keys.chat_window,
        keys.chatter_window,
        keys.viewers,
        keys.lifecycle,
        keys.paid,
        keys.paid_data,
        keys.paid_minutes,
    ]


def write_args(figures: dict[str, str], version: int) -> list[int | str]:
    """ARGV of :data:`CAS_WRITE`: the version, then every field as one JSON list."""
    return [version, json.dumps([item for pair in figures.items() for item in pair])]


def parse_snapshot(raw: list[Any]) -> Snapshot:
    """The SNAPSHOT script's reply as a :class:`Snapshot`."""
    now, version, chat, chatters, latest_viewers, lifecycle, *paid = raw
    pairs = list(zip(lifecycle[::2], map(float, lifecycle[1::2]), strict=True))
    today, this_stream, recent, rate = (PaidSums.from_reply(sums) for sums in paid)
    return Snapshot(
        now_ms=int(float(now)),
        version=int(version),
        chat_in_window=int(chat),
        chatters_in_window=int(chatters),
        viewers=int(latest_viewers[0].split(":")[1]) if latest_viewers else 0,
        stream=stream_state(pairs),
        today=today,
        this_stream=this_stream,
        recent=recent,
        rate=rate,
    )


def derive(snap: Snapshot, windows: Windows, zone: ZoneInfo) -> dict[str, str]:
    """Every field of ``metrics:{channel}``, as strings (formulas in docs/metrics.md)."""
    stream = snap.stream
    velocity = snap.chat_in_window * 60_000 / windows.chat_ms
    recent_paid = snap.recent.events
    return {
        "is_live": "1" if stream.is_live else "0",
        "stream_id": stream.stream_id,
        "stream_started_at": _iso(stream.started_ms),
        "stream_ended_at": _iso(stream.ended_ms),
        "current_activity": stream.activity,
        "viewer_count": str(snap.viewers),
        "chat_velocity": f"{velocity:.1f}",
        "unique_chatters_window": str(snap.chatters_in_window),
        "paid_events_window": str(recent_paid),
        "engagement_score": str(
            engagement_score(velocity, snap.viewers, snap.chatters_in_window, recent_paid)
        ),
        "revenue_today": _usd(snap.today.cents),
        "bits_today": str(snap.today.bits),
        "subs_count": str(snap.this_stream.subs),
        "revenue_stream": _usd(snap.this_stream.cents),
        "donations_per_hour": f"{donations_per_hour(snap):.2f}",
        "now": _iso(snap.now_ms),
        "version": str(snap.version),
    }


def rate_window_ms(now_ms: int, stream: StreamState) -> int:
    """Window of ``donations_per_hour``: an hour, or while a younger stream is live, its age
    (at least :data:`MIN_RATE_WINDOW_MS`). :data:`SNAPSHOT` computes the same bound in Lua."""
    if stream.is_live and stream.started_ms is not None:
        return min(HOUR_MS, max(now_ms - stream.started_ms, MIN_RATE_WINDOW_MS))
    return HOUR_MS


def donations_per_hour(snap: Snapshot) -> float:
    """Donation and bits USD over the trailing hour (or since the stream began), per hour."""
    window_ms = rate_window_ms(snap.now_ms, snap.stream)
    return snap.rate.tips / 100 * HOUR_MS / window_ms


def _usd(cents: int) -> str:
    return f"{cents / 100:.2f}"


def _iso(at_ms: int | None) -> str:
    return "" if at_ms is None else format_ts(from_epoch_ms(at_ms))
