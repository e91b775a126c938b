"""The post-stream report as data: what the Markdown and the HTML page both show.

:func:`assemble` is a pure function of what the retro worker read from Redis (the
stream summary, the bandit before and after, the segments' rewards, the biggest
donations), so building a report twice from the same state gives the same report:
a redelivered ``stream_ended`` rewrites the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from statistics import fmean
from typing import Literal

from pydantic import BaseModel, Field

from shared.bandit import ArmState
from shared.clock import format_ms
from shared.money import usd
from shared.readmodel.models import ActivityReport, SegmentReport, StreamSummary
from shared.readmodel.ranges import Paid

TOP_DONATIONS = 10


class Posterior(BaseModel):
    """One arm's Beta posterior."""

    alpha: float
    beta: float
    updates: int = Field(description="Rewards applied to the arm so far (all streams).")

    @property
    def mean(self) -> float:
        """alpha / (alpha + beta)."""
        return self.alpha / (self.alpha + self.beta)

    @property
    def sd(self) -> float:
        """Posterior standard deviation of the mean, in reward units."""
        total = self.alpha + self.beta
        return float((self.alpha * self.beta / (total * total * (total + 1))) ** 0.5)

    @classmethod
    def of(cls, state: ArmState) -> Posterior:
        """From the bandit's own record."""
        return cls(alpha=state.alpha, beta=state.beta, updates=state.updates)


class BanditSnapshot(BaseModel):
    """The bandit as it was before this stream's updates, stored once per stream.

    ``taken`` is ``stream_start`` when the retro worker saw the stream start (the
    normal case) and ``stream_end`` when it did not (then it is the state just before
    the retro's own pass, after the orchestrator's online updates).
    ``already_scored`` counts this stream's segments scored when it was taken.
    """

    taken: Literal["stream_start", "stream_end"]
    arms: dict[str, Posterior]
    already_scored: int = 0


class ActivityRow(BaseModel):
    """One activity of the stream: its figures, its rewards and its arm's posterior."""

    activity: str
    segments: int
    on_air_s: float
    share: float
    mean_engagement: float | None
    chat_velocity: float
    revenue_usd: float
    revenue_per_hour_usd: float
    avg_viewers: float
    scored: int = Field(description="Segments of this activity the bandit was rewarded for.")
    reward: float | None = Field(description="Mean reward of those segments (recorded ones).")
    is_arm: bool = Field(description="False for an activity the bandit does not choose among.")
    before: Posterior | None
    after: Posterior | None


class SegmentRow(BaseModel):
    """One activity segment of the timeline."""

    segment_id: str
    activity: str
    start: str
    end: str | None
    start_ms: int
    end_ms: int | None
    duration_s: float
    decided_by: str
    reason: str
    chat_velocity: float
    mean_engagement: float | None
    revenue_usd: float
    scored: bool
    reward: float | None


class DonationRow(BaseModel):
    """A donation or bits cheer, with its message."""

    ts: str
    user: str
    type: str
    usd: float
    message: str


class RetroReport(BaseModel):
    """Everything the report says about one stream."""

    channel: str
    stream_id: str
    found: bool = Field(description="False when analytics never saw the stream start.")
    complete: bool = Field(description="Found, and analytics had caught up to its end.")
    missing: list[str] = Field(description="What the report lacks, in words.")
    notes: list[str] = Field(description="What a reader should know about the figures.")
    summary: StreamSummary
    activities: list[ActivityRow]
    segments: list[SegmentRow]
    top_donations: list[DonationRow]
    bandit_taken: str = Field(description="When 'before' was taken (stream_start/stream_end).")
    bandit: dict[str, tuple[Posterior | None, Posterior]] = Field(
        description="Every arm: posterior before this stream (None if unknown), and after."
    )
    segments_scored: int
    rewards_known: int


def assemble(
    summary: StreamSummary,
    *,
    before: BanditSnapshot | None,
    after: Mapping[str, ArmState],
    scored: Iterable[str],
    rewards: Mapping[str, float],
    donations: Sequence[Paid],
    problems: Sequence[str],
    min_segment_s: float,
    notes: Sequence[str] = (),
) -> RetroReport:
    """The report of ``summary`` (see the module doc).

    ``after`` is the bandit after the retro's pass; ``scored`` the ids of this stream's
    segments the bandit has been rewarded for, ``rewards`` their recorded rewards;
    ``problems`` why analytics' figures may be incomplete (empty when caught up);
    ``notes`` anything else the reader should know.
    """
    done = set(scored)
    arms = {arm: Posterior.of(state) for arm, state in after.items()}
    prior = before.arms if before else {}
    segments = [segment_row(s, done, rewards) for s in summary.segments]
    return RetroReport(
        channel=summary.channel,
        stream_id=summary.stream_id,
        found=summary.found,
        complete=summary.found and not problems,
        missing=[*problems, *summary.missing],
        notes=[*caveats(summary, before, segments, min_segment_s), *notes],
        summary=summary,
        activities=[activity_row(a, segments, prior, arms) for a in summary.activities],
        segments=segments,
        top_donations=top_donations(donations),
        bandit_taken=before.taken if before else "",
        bandit={arm: (prior.get(arm), posterior) for arm, posterior in arms.items()},
        segments_scored=sum(1 for s in segments if s.scored),
        rewards_known=sum(1 for s in segments if s.reward is not None),
    )


def segment_row(s: SegmentReport, scored: set[str], rewards: Mapping[str, float]) -> SegmentRow:
    """A timeline row, with the segment's reward when the bandit got one."""
    return SegmentRow(
        segment_id=s.segment_id,
        activity=s.activity,
        start=s.start,
        end=s.end,
        start_ms=s.start_ms,
        end_ms=s.end_ms,
        duration_s=s.duration_s,
        decided_by=s.decided_by,
        reason=s.reason,
        chat_velocity=s.stats.chat_velocity,
        mean_engagement=s.stats.mean_engagement,
        revenue_usd=s.stats.revenue_usd,
        scored=s.segment_id in scored,
        reward=rewards.get(s.segment_id),
    )


def activity_row(
    a: ActivityReport,
    segments: Sequence[SegmentRow],
    before: Mapping[str, Posterior],
    after: Mapping[str, Posterior],
) -> ActivityRow:
    """One activity's figures, mean reward and posterior before and after."""
    own = [s for s in segments if s.activity == a.activity]
    rewards = [s.reward for s in own if s.reward is not None]
    return ActivityRow(
        activity=a.activity,
        segments=a.segments,
        on_air_s=a.on_air_s,
        share=a.share,
        mean_engagement=a.mean_engagement,
        chat_velocity=a.chat_velocity,
        revenue_usd=a.revenue_usd,
        revenue_per_hour_usd=a.revenue_per_hour_usd,
        avg_viewers=a.avg_viewers,
        scored=sum(1 for s in own if s.scored),
        reward=fmean(rewards) if rewards else None,
        is_arm=a.activity in after,
        before=before.get(a.activity),
        after=after.get(a.activity),
    )


def top_donations(paid: Sequence[Paid]) -> list[DonationRow]:
    """The biggest donations and cheers (ties: earliest first), with their messages."""
    gifts = [p for p in paid if p.type in ("donation", "bits")]
    ranked = sorted(gifts, key=lambda p: (-p.cents, p.ts_ms, p.id))[:TOP_DONATIONS]
    return [
        DonationRow(
            ts=format_ms(p.ts_ms), user=p.user, type=p.type, usd=usd(p.cents), message=p.message
        )
        for p in ranked
    ]


def caveats(
    summary: StreamSummary,
    before: BanditSnapshot | None,
    segments: Sequence[SegmentRow],
    min_segment_s: float,
) -> list[str]:
    """Caveats about the bandit columns and untracked time."""
    out: list[str] = []
    if summary.untracked_s > 0 and summary.segments:
        out.append(
            f"{summary.untracked_s:.0f} s before the first activity change belong to no activity."
        )
    unscored = [s for s in segments if not s.scored and s.end_ms is not None]
    if unscored:
        out.append(
            f"{len(unscored)} segment(s) earned no reward: shorter than {min_segment_s:.0f} s, "
            "no whole minute to measure, or an activity the bandit does not choose among."
        )
    if before is None:
        out.append("The bandit's state before this stream is unknown.")
    elif before.taken == "stream_end":
        out.append(
            "The retro worker did not see this stream start: 'before' is the bandit just "
            "before the retro's own pass, so it already holds the orchestrator's online updates."
        )
    elif before.already_scored:
        out.append(
            f"'before' was taken late, after {before.already_scored} of this stream's segments "
            "had been scored."
        )
    return out
