"""The read model's answers: pydantic models of timelines, segment stats and summaries.

These are what the analytics REST API returns, what the orchestrator scores and
what retro renders; their fields are documented in docs/redis-schema.md and
docs/metrics.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Segment(BaseModel):
    """One stretch of a stream with one activity on air, from one ``activity_changed``."""

    segment_id: str = Field(
        description="Stable id `{stream_id}:{start_ms}:{activity}`; bandit rewards key on it."
    )
    activity: str = Field(description="The activity on air.")
    previous: str = Field(description="The activity before it, as the change named it.")
    decided_by: str = Field(description="Who chose the activity (sim, bandit, operator...).")
    reason: str = Field(description="Why it was chosen, as the change event said.")
    start: str = Field(description="Start, RFC 3339 UTC.")
    end: str | None = Field(description="End, RFC 3339 UTC; null while on air.")
    start_ms: int = Field(description="Start, epoch ms.")
    end_ms: int | None = Field(description="End, epoch ms; null while on air.")
    on_air: bool = Field(description="True for the last segment of a live stream.")
    duration_s: float = Field(description="Seconds on air (to the channel clock while on air).")


class Timeline(BaseModel):
    """The activity segments of one stream, in time order."""

    channel: str = Field(description="Channel login.")
    stream_id: str = Field(description="The stream ('' when the channel never started one).")
    found: bool = Field(description="False when no stream_started exists for the stream.")
    is_live: bool = Field(description="True while the stream has not ended.")
    started: str | None = Field(description="Stream start, RFC 3339 UTC.")
    started_ms: int | None = Field(description="Stream start, epoch ms.")
    ended: str | None = Field(description="Stream end, RFC 3339 UTC; null while live.")
    ended_ms: int | None = Field(description="Stream end, epoch ms; null while live.")
    segments: list[Segment] = Field(description="Activity segments, in time order.")


class SegmentStats(BaseModel):
    """Figures of one time range ``[start, end)``; see :func:`segment_stats` for each rule."""

    start: str = Field(description="Range start, RFC 3339 UTC.")
    end: str = Field(description="Range end (exclusive), RFC 3339 UTC.")
    start_ms: int = Field(description="Range start, epoch ms.")
    end_ms: int = Field(description="Range end (exclusive), epoch ms.")
    duration_s: float = Field(description="Length of the range, seconds.")
    chat_messages: int = Field(description="Chat messages (per-second resolution).")
    chat_velocity: float = Field(description="Chat messages per minute over the range.")
    unique_chatters: int = Field(description="Distinct chatters (minute resolution).")
    revenue_usd: float = Field(description="Donations + bits + subs, USD.")
    revenue_per_hour_usd: float = Field(description="revenue_usd per hour of the range.")
    donations_usd: float = Field(description="Donations, USD.")
    bits: int = Field(description="Bits cheered.")
    bits_usd: float = Field(description="Bits, USD (one cent a bit).")
    subs: int = Field(description="Subs of every kind (gifts count each sub given).")
    subs_usd: float = Field(description="Estimated sub revenue, USD.")
    paid_events: int = Field(description="Donations, cheers and sub events.")
    avg_viewers: float = Field(description="Time-weighted mean of the viewer count.")
    peak_viewers: int = Field(description="Highest viewer count in force.")
    hours_watched: float = Field(description="Viewer-hours: integral of viewers over time.")
    mean_engagement: float | None = Field(
        description="Mean 0-100 engagement of the whole minutes of the range; null if none."
    )
    engagement_minutes: int = Field(description="Whole minutes mean_engagement is over.")


class SegmentReport(Segment):
    """A segment with its figures."""

    stats: SegmentStats = Field(description="Figures of the segment's time range.")


class ActivityReport(BaseModel):
    """One activity over all its segments of a stream."""

    activity: str = Field(description="The activity.")
    segments: int = Field(description="Segments it was on air.")
    on_air_s: float = Field(description="Seconds on air in total.")
    share: float = Field(description="on_air_s / stream duration_s, 0-1.")
    chat_messages: int = Field(description="Chat messages while on air.")
    chat_velocity: float = Field(description="Chat messages per minute on air.")
    unique_chatters: int = Field(description="Distinct chatters while on air (minute resolution).")
    revenue_usd: float = Field(description="Revenue while on air, USD.")
    revenue_per_hour_usd: float = Field(description="revenue_usd per hour on air.")
    avg_viewers: float = Field(description="Time-weighted mean viewers while on air.")
    mean_engagement: float | None = Field(
        description="Mean engagement of the whole minutes of its segments (time-weighted)."
    )


class Revenue(BaseModel):
    """Revenue of a stream by kind, USD."""

    donations_usd: float = Field(description="Donations, USD.")
    bits_usd: float = Field(description="Bits, USD.")
    subs_usd: float = Field(description="Subs, resubs and gifts (estimated), USD.")
    total_usd: float = Field(description="Sum of the three, USD.")


class TopChatter(BaseModel):
    """A chatter and their message count."""

    user: str = Field(description="User name.")
    messages: int = Field(description="Chat messages in the stream (minute resolution).")


class TopDonor(BaseModel):
    """A donor and what they gave in donations and bits."""

    user: str = Field(description="User name.")
    usd: float = Field(description="Donations + bits, USD.")


class ViewerPoint(BaseModel):
    """One viewer-count sample."""

    ts: str = Field(description="Sample time, RFC 3339 UTC.")
    ts_ms: int = Field(description="Sample time, epoch ms.")
    count: int = Field(description="Concurrent viewers.")


class ChatPoint(BaseModel):
    """Chat messages in one clock minute."""

    ts: str = Field(description="Start of the minute, RFC 3339 UTC.")
    ts_ms: int = Field(description="Start of the minute, epoch ms.")
    messages_per_min: int = Field(description="Messages in that minute (within the stream).")


class RevenuePoint(BaseModel):
    """One paid event and the stream's running total."""

    ts: str = Field(description="Event time, RFC 3339 UTC.")
    ts_ms: int = Field(description="Event time, epoch ms.")
    type: str = Field(description="donation, bits, sub, resub or gift.")
    amount_usd: float = Field(description="This event, USD.")
    cumulative_usd: float = Field(description="Stream revenue so far, USD.")


class StreamSummary(BaseModel):
    """Everything a post-stream report needs about one stream."""

    channel: str = Field(description="Channel login.")
    stream_id: str = Field(description="The stream ('' when the channel never started one).")
    found: bool = Field(description="False when no stream_started exists for the stream.")
    missing: list[str] = Field(description="What is absent (figures for it are zeros).")
    started: str | None = Field(description="Stream start, RFC 3339 UTC.")
    started_ms: int | None = Field(description="Stream start, epoch ms.")
    ended: str | None = Field(description="Stream end, RFC 3339 UTC; null while live.")
    ended_ms: int | None = Field(description="Stream end, epoch ms; null while live.")
    is_live: bool = Field(description="True while the stream has not ended.")
    duration_s: float = Field(description="Seconds from start to end (or to the clock).")
    untracked_s: float = Field(description="Seconds before the first activity change.")
    avg_viewers: float = Field(description="Time-weighted mean viewers.")
    peak_viewers: int = Field(description="Highest viewer count in force.")
    hours_watched: float = Field(description="Viewer-hours.")
    chat_messages: int = Field(description="Chat messages.")
    chat_velocity: float = Field(description="Chat messages per minute.")
    unique_chatters: int = Field(description="Distinct chatters (minute resolution).")
    mean_engagement: float | None = Field(description="Mean engagement of its whole minutes.")
    follows: int = Field(description="New followers.")
    raids: int = Field(description="Incoming raids.")
    raid_viewers: int = Field(description="Viewers the raids brought.")
    new_subs: int = Field(description="New subs (type sub).")
    resubs: int = Field(description="Resubs.")
    gifted_subs: int = Field(description="Subs given in gifts.")
    bits: int = Field(description="Bits cheered.")
    donations_count: int = Field(description="Donations (not cheers).")
    revenue: Revenue = Field(description="Revenue by kind, USD.")
    segments: list[SegmentReport] = Field(description="Activity segments with their figures.")
    activities: list[ActivityReport] = Field(description="Per activity, most time on air first.")
    top_chatters: list[TopChatter] = Field(description="Top 10 by messages.")
    top_donors: list[TopDonor] = Field(description="Top 10 by donations + bits, USD.")
    viewer_series: list[ViewerPoint] = Field(description="Viewer samples within the stream.")
    chat_velocity_series: list[ChatPoint] = Field(description="Messages per clock minute.")
    revenue_series: list[RevenuePoint] = Field(description="Each paid event, running total.")


class PaidEvent(BaseModel):
    """A donation or cheer as the dashboard's ``donation`` message carries it."""

    id: str = Field(description="Event id from its source.")
    username: str = Field(description="Who gave it.")
    amount: float = Field(description="USD.")
    message: str = Field(description="Message sent with it.")
    timestamp: str = Field(description="Event time, RFC 3339 UTC.")
    type: Literal["donation", "bits"] = Field(description="donation or bits.")
