"""Segment rewards for the bandit, and scoring ended segments exactly once.

A segment's reward in [0, 1] is how it did against the stream's running baseline:
``reward = 0.7 x engagement part + 0.3 x revenue part``, where

* engagement part = logistic((segment mean engagement - baseline mean engagement) / 10):
  ten points of engagement above the stream so far gives 0.73, ten below 0.27;
* revenue part = logistic(ln((segment USD/h + 1) / (baseline USD/h + 1))): twice the
  stream's revenue rate gives about 0.67, none when the stream earns gives less than 0.5.

The baseline is the same stream from its start to the segment's end, so rewards
compare activities under the same audience and day, and a segment exactly as good
as the stream so far scores 0.5. Reasoning and tuning notes: ``docs/bandit.md``.

:class:`SegmentScorer` applies them. A segment is scored when it has ended (a
switch or ``stream_ended``), lasted at least ``min_segment_s``, and the channel's
clock has passed its end by ``grace_s`` (so analytics has its late events). The
update is ``ThompsonBandit.update_once`` keyed by the segment id: check and update
are one Redis script, so whichever replica or service gets there first (the
orchestrator online, the retro worker at the end of the stream) applies it, and
retries never apply it twice. The JSON backup is saved after each update.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from redis.asyncio import Redis

from shared.bandit import ThompsonBandit
from shared.keys import Keys
from shared.stream_summary import Segment, Timeline, segment_stats, timeline

log = logging.getLogger("shared.rewards")
APPLIED_TTL_S = 30 * 86_400

ENGAGEMENT_WEIGHT = 0.7
REVENUE_WEIGHT = 0.3
ENGAGEMENT_SCALE = 10.0


def logistic(x: float) -> float:
    """1 / (1 + e^-x), computed without overflow."""
    if x >= 0:
        return 1 / (1 + math.exp(-x))
    exp = math.exp(x)
    return exp / (1 + exp)


def segment_reward(
    engagement: float, revenue_per_hour: float, base_engagement: float, base_revenue_per_hour: float
) -> float:
    """The reward of a segment against its baseline (see module doc), clamped to [0, 1]."""
    engagement_part = logistic((engagement - base_engagement) / ENGAGEMENT_SCALE)
    revenue_part = logistic(math.log((revenue_per_hour + 1) / (base_revenue_per_hour + 1)))
    reward = ENGAGEMENT_WEIGHT * engagement_part + REVENUE_WEIGHT * revenue_part
    return min(1.0, max(0.0, reward))


class SegmentScorer:
    """Turns ended segments into bandit updates (see module doc)."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        bandits: Callable[[str], ThompsonBandit],
        *,
        min_segment_s: float,
        grace_s: float,
        state_path: str,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.bandits = bandits
        self.min_segment_ms = int(min_segment_s * 1000)
        self.grace_ms = int(grace_s * 1000)
        self.state_path = state_path
        self.scored = 0
        self._done: set[str] = set()  # segment ids known to be scored, to skip the Redis check
        self._waiting: dict[str, bool] = {}

    async def score_ready(
        self, channel: str, stream_id: str | None = None, state: Timeline | None = None
    ) -> int:
        """Score every ready, unscored segment of the stream (latest by default); returns count.

        ``state``, when the caller has just read the stream's timeline, saves reading it again.
        """
        if state is None:
            state = await timeline(self.redis, self.keys, channel, stream_id)
        now = await self._stream_now(channel, state)
        if now is None or not state.segments:
            return 0
        applied = 0
        stream_start = (
            state.started_ms if state.started_ms is not None else state.segments[0].start_ms
        )
        self._waiting[channel] = False
        for segment in state.segments:
            if segment.end_ms is None:
                continue
            if now < segment.end_ms + self.grace_ms:
                self._waiting[channel] = True
                continue
            if segment.end_ms - segment.start_ms < self.min_segment_ms:
                continue
            applied += await self._score(channel, segment, stream_start)
        return applied

    async def _stream_now(self, channel: str, state: Timeline) -> float | None:
        """The clock to judge ``state``'s segments by: the channel's, or, for an ended
        stream a later stream has replaced (the clock now belongs to that one, and may
        be behind this stream's end), +inf: every one of its segments has ended.

        Segment ids carry their stream's id and ``update_once`` is keyed by them, so
        whatever the clocks say an ended stream's segment is scored at most once.
        """
        clock = self.keys.analytics(channel).clock
        now, began = await self.redis.zmscore(clock, ["now", "started"])
        replaced = (
            state.ended_ms is not None
            and began is not None
            and state.started_ms is not None
            and began > state.started_ms
        )
        return math.inf if replaced and now is not None else now

    def waiting(self, channel: str) -> bool:
        """True when the last pass left an ended segment waiting for its grace period."""
        return self._waiting.get(channel, False)

    async def _score(self, channel: str, segment: Segment, stream_start_ms: int) -> int:
        bandit = self.bandits(channel)
        activity, segment_id = segment.activity, segment.segment_id
        if activity not in bandit.arms or segment_id in self._done:
            return 0
        if await self.redis.exists(self.keys.bandit_applied(channel, segment_id)):
            self._done.add(segment_id)
            return 0
        start, end = segment.start_ms, segment.end_ms
        assert end is not None  # only ended segments are scored
        own = await segment_stats(self.redis, self.keys, channel, start, end)
        base = await segment_stats(self.redis, self.keys, channel, stream_start_ms, end)
        if own.mean_engagement is None or base.mean_engagement is None:
            self._done.add(segment_id)
            log.info("%s: %s holds no whole minute to measure; not scored", channel, segment_id)
            return 0
        reward = segment_reward(
            own.mean_engagement,
            own.revenue_per_hour_usd,
            base.mean_engagement,
            base.revenue_per_hour_usd,
        )
        self._done.add(segment_id)
        if not await bandit.update_once(activity, reward, segment_id, APPLIED_TTL_S):
            return 0
        self.scored += 1
        log.info(
            "%s: scored %s (%s, %.0f s): reward %.3f",
            channel,
            segment_id,
            activity,
            (end - start) / 1000,
            reward,
        )
        await bandit.save(self.state_path)
        return 1
