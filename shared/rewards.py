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
clock has passed its end by ``grace_s`` (so analytics has its late events). With
``chunks``, a long segment is scored in chunks of ``min_segment_s`` instead, each once
(:meth:`SegmentScorer.ready_chunks`), so a long run of one activity keeps producing
evidence. The
update is ``ThompsonBandit.update_once`` keyed by the segment id: check and update
are one Redis script, so whichever replica or service gets there first (the
orchestrator online, the retro worker at the end of the stream) applies it, and
retries never apply it twice. The JSON backup is saved after each update.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from shared.bandit import ThompsonBandit
from shared.keys import Keys
from shared.readmodel.figures import segment_stats
from shared.readmodel.lifecycle import timeline
from shared.readmodel.models import Segment, Timeline

log = logging.getLogger("shared.rewards")
APPLIED_TTL_S = 30 * 86_400
RECENT_SCORED = 1000

ENGAGEMENT_WEIGHT = 0.7
REVENUE_WEIGHT = 0.3
ENGAGEMENT_SCALE = 10.0


def logistic(x: float) -> float:
    """1 / (1 + e^-x), computed without overflow."""
    if x >= 0:
        return 1 / (1 + math.exp(-x))
    exp = math.exp(x)
    return exp / (1 + exp)


def reward_parts(
    engagement: float, revenue_per_hour: float, base_engagement: float, base_revenue_per_hour: float
) -> tuple[float, float]:
    """The engagement part and the revenue part of a reward, each in [0, 1] (module doc)."""
    engagement_part = logistic((engagement - base_engagement) / ENGAGEMENT_SCALE)
    revenue_part = logistic(math.log((revenue_per_hour + 1) / (base_revenue_per_hour + 1)))
    return engagement_part, revenue_part


def shrunk_revenue_per_hour(
    revenue_usd: float, hours: float, base_per_hour: float, prior_hours: float
) -> float:
    """The window's revenue rate shrunk toward ``base_per_hour``: as if the window had
    ``prior_hours`` more at the base rate. A single tip in a 3-minute chunk then moves the
    rate by its amount / (0.05 h + prior_hours) instead of / 0.05 h; 0 gives the plain rate."""
    total_hours = hours + prior_hours
    if total_hours <= 0:
        return 0.0
    return (revenue_usd + base_per_hour * prior_hours) / total_hours


def segment_reward(
    engagement: float, revenue_per_hour: float, base_engagement: float, base_revenue_per_hour: float
) -> float:
    """The reward of a segment against its baseline (see module doc), clamped to [0, 1]."""
    engagement_part, revenue_part = reward_parts(
        engagement, revenue_per_hour, base_engagement, base_revenue_per_hour
    )
    reward = ENGAGEMENT_WEIGHT * engagement_part + REVENUE_WEIGHT * revenue_part
    return min(1.0, max(0.0, reward))


@dataclass(frozen=True)
class Chunk:
    """A piece of a segment scored on its own: its exactly-once token and its window."""

    token: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class Scored:
    """A reward this scorer applied, with its two parts (kept for measuring their noise)."""

    activity: str
    token: str
    reward: float
    engagement_part: float
    revenue_part: float


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
        chunks: bool = False,
        revenue_prior_s: float = 0.0,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.bandits = bandits
        self.min_segment_ms = int(min_segment_s * 1000)
        self.grace_ms = int(grace_s * 1000)
        self.state_path = state_path
        self.chunks = chunks and self.min_segment_ms > 0
        self.revenue_prior_h = revenue_prior_s / 3600
        self.scored = 0
        self.recent: deque[Scored] = deque(maxlen=RECENT_SCORED)
        self._done: set[str] = set()  # segment ids known to be scored, to skip the Redis check
        self._ready_at: dict[str, float] = {}  # event time ms a waiting segment is ready

    async def score_ready(
        self, channel: str, stream_id: str | None = None, state: Timeline | None = None
    ) -> int:
        """Score every ready, unscored segment of the stream (latest by default); returns count.

        ``state``, when the caller has just read the stream's timeline, saves reading it again.
        """
        if state is None:
            state = await timeline(self.redis, self.keys, channel, stream_id)
        now = await self._stream_now(channel, state)
        self._ready_at.pop(channel, None)
        if now is None or not state.segments:
            return 0
        applied = 0
        stream_start = (
            state.started_ms if state.started_ms is not None else state.segments[0].start_ms
        )
        for segment in state.segments:
            chunks = self.ready_chunks(segment, now)
            self._note_ready_at(channel, self.ready_after(segment, now, len(chunks)))
            for chunk in chunks:
                applied += await self._score(channel, segment, chunk, stream_start)
        return applied

    def _note_ready_at(self, channel: str, at_ms: float | None) -> None:
        if at_ms is not None:
            self._ready_at[channel] = min(at_ms, self._ready_at.get(channel, math.inf))

    def ready_chunks(self, segment: Segment, now_ms: float) -> list[Chunk]:
        """The pieces of ``segment`` that are final and past their grace at ``now_ms``.

        Without chunks: the whole ended segment, if at least ``min_segment_s`` long. With
        chunks of L = ``min_segment_s``: a segment lasting d >= L has floor(d / L) chunks, the
        last one running to the segment's end (so it is L to 2L long); while the segment
        runs, chunk k is final once it has lasted (k + 2) L. Chunk 0's token is the segment
        id, chunk k's ``{segment id}:{k}``, so whoever scores it, whenever, the windows and
        tokens are the same and each chunk is applied once.
        """
        start, end, length = segment.start_ms, segment.end_ms, self.min_segment_ms
        if not self.chunks:
            if end is None or end - start < length or now_ms < end + self.grace_ms:
                return []
            return [Chunk(segment.segment_id, start, end)]
        count = int(((end if end is not None else now_ms) - start) // length)
        known = count if end is not None else count - 1  # a running segment's last may grow
        chunks: list[Chunk] = []
        for k in range(max(0, known)):
            chunk_end = end if end is not None and k == count - 1 else start + (k + 1) * length
            if now_ms < chunk_end + self.grace_ms:
                break
            token = segment.segment_id if k == 0 else f"{segment.segment_id}:{k}"
            chunks.append(Chunk(token, start + k * length, chunk_end))
        return chunks

    def ready_after(self, segment: Segment, now_ms: float, ready: int) -> float | None:
        """The event time ``segment`` yields a chunk more than the ``ready`` it yields at
        ``now_ms`` (see :meth:`ready_chunks`); None when no more will come as time passes
        (only a lifecycle change, ending a segment, makes more)."""
        start, end, length = segment.start_ms, segment.end_ms, self.min_segment_ms
        if not self.chunks:
            if end is None or end - start < length or now_ms >= end + self.grace_ms:
                return None
            return end + self.grace_ms
        if end is None:  # chunk ``ready`` is final once the segment lasted (ready + 2) L
            return start + max((ready + 2) * length, (ready + 1) * length + self.grace_ms)
        count = int((end - start) // length)
        if ready >= count:
            return None
        chunk_end = end if ready == count - 1 else start + (ready + 1) * length
        return chunk_end + self.grace_ms

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
        """True when the last pass left a segment (or chunk) to score once time passes."""
        return channel in self._ready_at

    def ready_at(self, channel: str) -> float | None:
        """The event time (ms) the last pass's first waiting segment or chunk is ready."""
        return self._ready_at.get(channel)

    async def _score(
        self, channel: str, segment: Segment, chunk: Chunk, stream_start_ms: int
    ) -> int:
        bandit = self.bandits(channel)
        activity, segment_id = segment.activity, chunk.token
        if activity not in bandit.arms or segment_id in self._done:
            return 0
        if await self.redis.exists(self.keys.bandit_applied(channel, segment_id)):
            self._done.add(segment_id)
            return 0
        start, end = chunk.start_ms, chunk.end_ms
        own = await segment_stats(self.redis, self.keys, channel, start, end)
        base = await segment_stats(self.redis, self.keys, channel, stream_start_ms, end)
        if own.mean_engagement is None or base.mean_engagement is None:
            self._done.add(segment_id)
            log.info("%s: %s holds no whole minute to measure; not scored", channel, segment_id)
            return 0
        figures = (
            own.mean_engagement,
            shrunk_revenue_per_hour(
                own.revenue_usd,
                own.duration_s / 3600,
                base.revenue_per_hour_usd,
                self.revenue_prior_h,
            ),
            base.mean_engagement,
            base.revenue_per_hour_usd,
        )
        reward = segment_reward(*figures)
        self._done.add(segment_id)
        if not await bandit.update_once(activity, reward, segment_id, APPLIED_TTL_S):
            return 0
        self.scored += 1
        self.recent.append(Scored(activity, segment_id, reward, *reward_parts(*figures)))
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
