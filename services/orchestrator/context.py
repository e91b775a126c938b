"""What the orchestrator knows of a channel when it decides, and the text Claude reads.

:class:`MetricsReader` reads the live figures analytics keeps (``metrics:{channel}``)
and, for Claude, a compact situation report (:func:`render`): the stream's elapsed
time, what is on air and for how long, the live figures, the viewer trend of the
last minutes, each activity's posterior (mean and uncertainty in reward units)
with its segments so far this stream and their rewards, the bandit's suggestion,
recent donations and cheers, and Claude's own last chat lines (so it does not
repeat itself). It stays a few hundred tokens, so a call is cheap and quick.

The bandit's posterior is read through one function, :func:`posterior_summary`,
so a change of the bandit's model touches one place.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from redis.asyncio import Redis

from shared.bandit import ThompsonBandit
from shared.clock import parse_ts
from shared.keys import Keys
from shared.readmodel.donations import recent_donations
from shared.readmodel.lifecycle import timeline
from shared.readmodel.models import PaidEvent
from shared.readmodel.ranges import in_force

TREND_MINUTES = 5
RECENT_PAID = 5
RECENT_PAID_MS = 10 * 60_000
OWN_LINES = 3
DECISIONS_SCANNED = 40
Posterior = tuple[float, float, int]
"""(mean reward, standard deviation, rewards applied) of one activity."""


@dataclass(frozen=True)
class StreamFigures:
    """The live figures a decision uses (from analytics' ``metrics:{channel}`` hash)."""

    is_live: bool
    viewers: int
    chat_velocity: float
    engagement: float
    revenue_per_hour: float
    current_activity: str


@dataclass(frozen=True)
class PastSegment:
    """One segment of this stream: its activity, length, reward (None: not scored yet)."""

    activity: str
    duration_s: float
    reward: float | None
    on_air: bool


@dataclass(frozen=True)
class Situation:
    """Everything Claude is told at one decision (see :func:`render`)."""

    figures: StreamFigures | None
    suggestion: str
    current: str
    on_air_s: float
    elapsed_s: float | None = None
    viewer_trend: list[int] = field(default_factory=list)
    posteriors: dict[str, Posterior] = field(default_factory=dict)
    segments: list[PastSegment] = field(default_factory=list)
    paid: list[PaidEvent] = field(default_factory=list)
    own_lines: list[str] = field(default_factory=list)


async def posterior_summary(bandit: ThompsonBandit) -> dict[str, Posterior]:
    """Each arm's posterior as (mean, sd, rewards applied), from its Beta(alpha, beta).

    The one place the context reads the bandit's model: mean a/(a+b), sd
    sqrt(ab / ((a+b)^2 (a+b+1))), both in reward units (0..1).
    """
    summary: dict[str, Posterior] = {}
    for arm, state in (await bandit.state()).items():
        a, b = state.alpha, state.beta
        sd = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
        summary[arm] = (a / (a + b), sd, state.updates)
    return summary


class MetricsReader:
    """Reads the figures analytics keeps for a channel, and Claude's situation report."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def figures(self, channel: str) -> StreamFigures:
        """The channel's figures now (zeros and offline before analytics has any)."""
        key = self.keys.metrics(channel)
        raw: dict[str, str] = await self.redis.hgetall(key)  # type: ignore[assignment]
        return StreamFigures(
            is_live=raw.get("is_live") == "1",
            viewers=int(raw.get("viewer_count", 0)),
            chat_velocity=float(raw.get("chat_velocity", 0)),
            engagement=float(raw.get("engagement_score", 0)),
            revenue_per_hour=float(raw.get("donations_per_hour", 0)),
            current_activity=raw.get("current_activity", ""),
        )

    async def situation(
        self,
        channel: str,
        *,
        current: str,
        on_air_s: float,
        at_ms: int,
        suggestion: str,
        bandit: ThompsonBandit | None,
    ) -> Situation:
        """The channel's situation at event time ``at_ms`` (its latest stream)."""
        line = await timeline(self.redis, self.keys, channel)
        rewards = await bandit.rewards([s.segment_id for s in line.segments]) if bandit else {}
        started = line.started_ms
        return Situation(
            figures=await self.figures(channel),
            suggestion=suggestion,
            current=current,
            on_air_s=on_air_s,
            elapsed_s=(at_ms - started) / 1000 if started is not None else None,
            viewer_trend=await self.viewer_trend(channel, at_ms),
            posteriors=await posterior_summary(bandit) if bandit else {},
            segments=[
                PastSegment(s.activity, s.duration_s, rewards.get(s.segment_id), s.on_air)
                for s in line.segments
            ],
            paid=await self.recent_paid(channel, max(started or 0, at_ms - RECENT_PAID_MS)),
            own_lines=await self.own_lines(channel, line.stream_id),
        )

    async def viewer_trend(self, channel: str, at_ms: int) -> list[int]:
        """The viewer count at each whole minute of the last ``TREND_MINUTES``, oldest first."""
        since = at_ms - TREND_MINUTES * 60_000
        members = await self.redis.zrangebyscore(
            self.keys.analytics(channel).viewers, since - 60 * 60_000, at_ms
        )
        samples = sorted((int(t), int(c)) for t, c in (str(m).split(":") for m in members))
        if not samples:
            return []
        marks = [since + n * 60_000 for n in range(1, TREND_MINUTES + 1)]
        return [in_force(samples, mark) for mark in marks if mark >= samples[0][0]]

    async def recent_paid(self, channel: str, since_ms: int) -> list[PaidEvent]:
        """Donations and cheers since ``since_ms``, newest first (at most ``RECENT_PAID``)."""
        found = await recent_donations(self.redis, self.keys, channel, RECENT_PAID)
        since = since_ms / 1000
        return [p for p in found if _epoch_s(p.timestamp) >= since]

    async def own_lines(self, channel: str, stream_id: str) -> list[str]:
        """Claude's last chat lines of this stream, oldest first."""
        key = self.keys.decisions(channel)
        entries: list[tuple[str, dict[str, str]]] = await self.redis.xrevrange(  # type: ignore[assignment]
            key, count=DECISIONS_SCANNED
        )
        lines = [
            fields["chat_message"]
            for _, fields in entries
            if fields.get("chat_message") and fields.get("stream_id") == stream_id
        ]
        return list(reversed(lines[:OWN_LINES]))


def render(s: Situation) -> str:
    """The compact text Claude reads (one fact a line)."""
    lines = [
        f"Stream live for {duration(s.elapsed_s)}." if s.elapsed_s is not None else "Stream: live.",
        f"On air: {s.current} for {duration(s.on_air_s)}."
        if s.current
        else "On air: nothing yet; choose the opening activity with switch_activity.",
        describe(s.figures, "", s.current).split(" Current activity")[0],
    ]
    if s.viewer_trend:
        lines.append(
            f"Viewers, last {len(s.viewer_trend)} min: "
            f"{', '.join(map(str, s.viewer_trend))} ({trend(s.viewer_trend)})."
        )
    if s.posteriors:
        lines.append(
            "Activities (posterior mean reward ± sd, rewards so far; this stream's segments):"
        )
        lines += [
            f"- {arm}: {mean:.2f} ± {sd:.2f}, n={n}; {segments_of(arm, s.segments)}"
            for arm, (mean, sd, n) in s.posteriors.items()
        ]
    if s.suggestion:
        lines.append(f"Bandit suggests: {s.suggestion}.")
    if s.paid:
        lines.append("Recent paid: " + "; ".join(paid_line(p) for p in s.paid) + ".")
    if s.own_lines:
        lines.append("Your last chat lines: " + " | ".join(f'"{x}"' for x in s.own_lines))
    return "\n".join(lines)


def segments_of(arm: str, segments: Sequence[PastSegment]) -> str:
    """``this stream: 5m (0.61), 3m (on air)`` or ``none this stream``."""
    mine = [seg for seg in segments if seg.activity == arm]
    if not mine:
        return "none this stream"
    parts = [
        f"{duration(seg.duration_s)} "
        + ("(on air)" if seg.on_air else f"({seg.reward:.2f})" if seg.reward is not None else "(-)")
        for seg in mine[-4:]
    ]
    more = f"{len(mine) - 4} earlier, " if len(mine) > 4 else ""
    return f"this stream: {more}{', '.join(parts)}"


def paid_line(p: PaidEvent) -> str:
    """``alice donated $10.00 "message"`` or ``bob cheered $5.00``."""
    verb = "cheered" if p.type == "bits" else "donated"
    note = f' "{" ".join(p.message.split())[:60]}"' if p.message else ""
    return f"{p.username} {verb} ${p.amount:.2f}{note}"


def trend(counts: Sequence[int]) -> str:
    """rising, falling or steady: the last count against the first, beyond 5 %."""
    first, last = counts[0], counts[-1]
    if last > first * 1.05:
        return "rising"
    if last < first * 0.95:
        return "falling"
    return "steady"


def duration(seconds: float | None) -> str:
    """``1h 02m``, ``3m 20s`` or ``45s``."""
    if seconds is None:
        return "unknown"
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _epoch_s(rfc3339: str) -> float:
    return parse_ts(rfc3339).timestamp()


def describe(figures: StreamFigures | None, suggestion: str | None, current: str) -> str:
    """The basic context: ``Stream state: 42 viewers, ... Current activity: talk.``

    Without figures (no metrics reader) or a suggestion (no bandit) it says so plainly.
    """
    parts = []
    if figures is None:
        parts.append("Stream state: unknown (no live figures available).")
    else:
        parts.append(
            f"Stream state: {figures.viewers} viewers, chat velocity {figures.chat_velocity:g} "
            f"msg/min, engagement {figures.engagement:g}/100, "
            f"revenue ${figures.revenue_per_hour:g}/hr."
        )
    if suggestion:
        parts.append(f"Bandit suggests: {suggestion}.")
    parts.append(f"Current activity: {current or 'none yet'}.")
    return " ".join(parts)
