"""Derived figures: the ``metrics:{channel}`` hash, recomputed from the raw channel state.

:func:`recompute` reads a consistent snapshot of the raw state (one MULTI),
derives every figure (formulas in ``docs/metrics.md``) and writes the hash only
if no newer snapshot was written meanwhile (compare-and-set on the state
version), so replicas recomputing at once never leave an older result behind.
Time is event time: "now" is the largest ``ts`` the channel has seen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from redis.asyncio import Redis

from shared.clock import format_ts
from shared.keys import AnalyticsKeys, Keys
from shared.stream_summary import StreamState as StreamState
from shared.stream_summary import engagement_score as engagement_score
from shared.stream_summary import stream_state as stream_state

HOUR_MS = 3_600_000
MIN_RATE_WINDOW_MS = 60_000
SNAPSHOT = """
local now = tonumber(redis.call('ZSCORE', KEYS[1], 'now'))
if not now then return false end
local chat_from = now - tonumber(ARGV[1])
local engagement_from = now - tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. chat_from)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. engagement_from)
local since = math.min(tonumber(ARGV[3]), now - 3600000)
local paid = redis.call('ZRANGEBYSCORE', KEYS[7], since, '+inf')
local paid_data = {}
for first = 1, #paid, 1000 do  -- unpack() has a stack limit: read in chunks
  local chunk = redis.call('HMGET', KEYS[8], unpack(paid, first, math.min(first + 999, #paid)))
  for _, item in ipairs(chunk) do paid_data[#paid_data + 1] = item end
end
return {
  tostring(now),
  redis.call('GET', KEYS[2]) or '0',
  redis.call('ZCOUNT', KEYS[3], '(' .. chat_from, '+inf'),
  redis.call('ZCOUNT', KEYS[4], '(' .. engagement_from, '+inf'),
  redis.call('ZREVRANGE', KEYS[5], 0, 0),
  redis.call('ZRANGE', KEYS[6], 0, -1, 'WITHSCORES'),
  paid_data,
}
"""
CAS_WRITE = """
local seen = tonumber(redis.call('HGET', KEYS[1], 'version') or '-1')
if seen > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""


@dataclass(frozen=True)
class Windows:
    """Window lengths, in milliseconds of event time."""

    chat_ms: int
    engagement_ms: int


def local_day_ms(now_ms: int, zone: ZoneInfo) -> tuple[int, int]:
    """Start and end (epoch ms) of the calendar day in ``zone`` that contains ``now_ms``."""
    local = datetime.fromtimestamp(now_ms / 1000, UTC).astimezone(zone)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return round(start.timestamp() * 1000), round(end.timestamp() * 1000)


@dataclass(frozen=True)
class Snapshot:
    """The raw figures of one channel at one instant of its event time."""

    now_ms: int
    version: int
    chat_in_window: int
    chatters_in_window: int
    viewers: int
    stream: StreamState
    paid: list[dict[str, Any]]


class MetricsComputer:
    """Recomputes ``metrics:{channel}`` from the raw state (see module doc)."""

    def __init__(self, redis: Redis, keys: Keys, windows: Windows, zone: ZoneInfo) -> None:
        self.redis = redis
        self.keys = keys
        self.windows = windows
        self.zone = zone
        self._snapshot = redis.register_script(SNAPSHOT)
        self._cas_write = redis.register_script(CAS_WRITE)

    async def recompute(self, channel: str) -> dict[str, str]:
        """Derive and store the channel's figures; returns them (``{}`` before any event)."""
        snapshot = await self.snapshot(channel)
        if snapshot is None:
            return {}
        figures = derive(snapshot, self.windows, self.zone)
        flat = [item for pair in figures.items() for item in pair]
        await self._cas_write(keys=[self.keys.metrics(channel)], args=[snapshot.version, *flat])
        return figures

    async def snapshot(self, channel: str) -> Snapshot | None:
        """One atomic read of the raw state (windows trimmed on the way)."""
        keys = self.keys.analytics(channel)
        since = await self._paid_since(keys)
        raw = await self._snapshot(
            keys=[
                keys.clock,
                keys.version,
                keys.chat_window,
                keys.chatter_window,
                keys.viewers,
                keys.lifecycle,
                keys.paid,
                keys.paid_data,
            ],
            args=[self.windows.chat_ms, self.windows.engagement_ms, since],
        )
        return parse_snapshot(raw) if raw else None

    async def _paid_since(self, keys: AnalyticsKeys) -> int:
        """Earliest paid event needed: start of today or of the current stream."""
        now = await self.redis.zscore(keys.clock, "now")
        if now is None:
            return 0
        lifecycle: list[tuple[str, float]] = await self.redis.zrange(
            keys.lifecycle, 0, -1, withscores=True
        )  # type: ignore[assignment]
        started = stream_state(lifecycle).started_ms
        day_start, _ = local_day_ms(int(now), self.zone)
        return min(day_start, started if started is not None else day_start)


def parse_snapshot(raw: list[Any]) -> Snapshot:
    """The SNAPSHOT script's reply as a :class:`Snapshot`."""
    now, version, chat, chatters, latest_viewers, lifecycle, paid = raw
    pairs = list(zip(lifecycle[::2], map(float, lifecycle[1::2]), strict=True))
    return Snapshot(
        now_ms=int(float(now)),
        version=int(version),
        chat_in_window=int(chat),
        chatters_in_window=int(chatters),
        viewers=int(latest_viewers[0].split(":")[1]) if latest_viewers else 0,
        stream=stream_state(pairs),
        paid=[json.loads(item) for item in paid if item],
    )


def derive(snap: Snapshot, windows: Windows, zone: ZoneInfo) -> dict[str, str]:
    """Every field of ``metrics:{channel}``, as strings (formulas in docs/metrics.md)."""
    day_start, day_end = local_day_ms(snap.now_ms, zone)
    today = [p for p in snap.paid if day_start <= p["ts"] < day_end]
    stream = snap.stream
    this_stream = [p for p in snap.paid if in_stream(p["ts"], stream)]
    velocity = snap.chat_in_window * 60_000 / windows.chat_ms
    recent_paid = sum(1 for p in snap.paid if p["ts"] > snap.now_ms - windows.engagement_ms)
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
        "revenue_today": _usd(sum(p["cents"] for p in today)),
        "bits_today": str(sum(p.get("bits", 0) for p in today)),
        "subs_count": str(sum(p.get("count", 0) for p in this_stream if p["type"] in SUB_TYPES)),
        "revenue_stream": _usd(sum(p["cents"] for p in this_stream)),
        "donations_per_hour": f"{donations_per_hour(snap):.2f}",
        "now": _iso(snap.now_ms),
        "version": str(snap.version),
    }


SUB_TYPES = frozenset({"sub", "resub", "gift"})


def in_stream(at_ms: int, stream: StreamState) -> bool:
    """True when ``at_ms`` falls inside the current (or last) stream."""
    if stream.started_ms is None:
        return False
    return stream.started_ms <= at_ms and (stream.ended_ms is None or at_ms <= stream.ended_ms)


def donations_per_hour(snap: Snapshot) -> float:
    """Donation and bits USD over the trailing hour (or since the stream began), per hour."""
    window_ms = HOUR_MS
    if snap.stream.is_live and snap.stream.started_ms is not None:
        window_ms = min(HOUR_MS, max(snap.now_ms - snap.stream.started_ms, MIN_RATE_WINDOW_MS))
    cents: int = sum(
        p["cents"]
        for p in snap.paid
        if p["type"] in ("donation", "bits") and p["ts"] > snap.now_ms - window_ms
    )
    return cents / 100 * HOUR_MS / window_ms


def _usd(cents: int) -> str:
    return f"{cents / 100:.2f}"


def _iso(at_ms: int | None) -> str:
    return "" if at_ms is None else format_ts(datetime.fromtimestamp(at_ms / 1000, UTC))
