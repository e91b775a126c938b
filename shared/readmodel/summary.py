"""Post-stream summaries: a stream's figures, activities, top lists and series.

Everything here is derived from analytics' raw, order-independent channel state
(:class:`shared.keys.AnalyticsKeys`), so a summary is the same whatever order or
batches the events arrived in. The analytics REST API serves it and retro builds
its report from it.

Conventions:

* Time is event time: epoch milliseconds (``*_ms``) or RFC 3339 UTC ``Z`` strings.
  Ranges are half-open, ``[start, end)``, except that a live stream and its
  on-air segment run through the channel clock ("now", the largest ``ts`` seen),
  ``[start, now]``: the latest events count, the length is ``now - start``.
* A stream runs from its ``stream_started`` to its ``stream_ended``, or to the
  next ``stream_started`` of another stream, whichever comes first.
* A stream's boundaries belong to it: an event at the very instant of its
  ``stream_started`` or of its own ``stream_ended`` counts in its figures (an
  instant where another stream starts is that stream's).
* Resolution of the raw state: chat is counted per second (a second belongs to
  the range its start falls in, except that a stream's first second is the
  stream's, so counts are exact when bounds are whole seconds and a message at
  the start instant always counts); chatters per minute (a chatter counts in
  every range overlapping a minute they wrote in); paid events, viewer samples
  and lifecycle to the ms.
* Money is summed in integer cents and reported in USD rounded to cents.

Reads: a timeline is one MULTI (clock + lifecycle); the figures of a range are one
Lua script call (:data:`READ_RANGE`), so a whole summary costs two round trips.
A summary reads every paid record of its stream (top donors, the revenue series);
:func:`segment_stats` reads only paid totals (``shared.readmodel.paid_sums``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from shared.clock import format_ms
from shared.keys import Keys
from shared.money import usd, usd_per_hour
from shared.readmodel.figures import (
    SUB_TYPES,
    Cents,
    Figures,
    Window,
    figures,
    mean_score,
    overlapping_minutes,
    per_minute,
    stats_of,
    viewer_figures,
)
from shared.readmodel.lifecycle import Span, load_stream, segment_window
from shared.readmodel.models import (
    ActivityReport,
    ChatPoint,
    Revenue,
    RevenuePoint,
    Segment,
    SegmentReport,
    StreamSummary,
    TopChatter,
    TopDonor,
    ViewerPoint,
)
from shared.readmodel.ranges import (
    MINUTE_MS,
    SECOND_MS,
    Paid,
    RawRange,
    Social,
    parse_range,
    read_range,
    without_stale_viewers,
)

TOP_N = 10
DONATION_TYPES = frozenset({"donation", "bits"})


async def stream_summary(
    redis: Redis, keys: Keys, channel: str, stream_id: str | None = None
) -> StreamSummary:
    """Post-stream report of ``stream_id`` on ``channel`` (the latest started by default).

    Per-range rules are those of :func:`segment_stats`; the stream runs as in the
    module doc. Never raises for missing data: a stream that never started gives
    ``found`` false, and whatever is absent is listed in ``missing`` with zeros.
    Two round trips: the lifecycle, then one script reading the stream's range.
    """
    analytics = keys.analytics(channel)
    stream_id, span, segments = await load_stream(redis, analytics, stream_id)
    if span is None:
        return not_found(channel, stream_id)
    window = span.window
    raw = await read_range(redis, analytics, window.chat_start_ms, window.stop_ms)
    return summarise(channel, span, segments, without_stale_viewers(raw))


def not_found(channel: str, stream_id: str | None) -> StreamSummary:
    """The summary of a stream that never started: ``found`` false, zeros, all missing."""
    reason = f"no stream_started for stream {stream_id}" if stream_id else None
    reason = reason or f"no stream_started on channel {channel}"
    empty = parse_range(0, 0, [[], [], [], [], [], []])
    span = Span(stream_id or "", 0, 0, 0)
    summary = summarise(channel, span, [], empty)
    return summary.model_copy(
        update={
            "found": False,
            "missing": [reason, *summary.missing],
            **dict.fromkeys(("started", "started_ms", "ended", "ended_ms")),
        }
    )


def summarise(
    channel: str, span: Span, segments: Sequence[Segment], raw: RawRange
) -> StreamSummary:
    """The summary of a found stream from its span, segments and raw state."""
    fig = figures(raw, [span.window])
    reports = [
        SegmentReport(**s.model_dump(), stats=stats_of(raw, segment_window(s, span)))
        for s in segments
    ]
    return StreamSummary(
        channel=channel,
        stream_id=span.stream_id,
        found=True,
        missing=missing(raw, fig, segments),
        **span_fields(span, segments),
        **viewer_figures(fig),
        chat_messages=fig.chat,
        chat_velocity=per_minute(fig.chat, fig.duration_ms),
        unique_chatters=fig.unique_chatters,
        mean_engagement=mean_score(fig.scores),
        **social_counts(raw.social),
        **paid_counts(fig.paid),
        segments=reports,
        activities=activity_reports(raw, span, segments),
        top_chatters=top_chatters(fig.chatters),
        top_donors=top_donors(fig.paid),
        viewer_series=viewer_series(raw),
        chat_velocity_series=chat_series(raw, span.window),
        revenue_series=revenue_series(fig.paid),
    )


def span_fields(span: Span, segments: Sequence[Segment]) -> dict[str, Any]:
    """Start, end, liveness and durations of the stream."""
    first = segments[0].start_ms if segments else span.window.end_ms
    return {
        "started": format_ms(span.started_ms),
        "started_ms": span.started_ms,
        "ended": format_ms(span.ended_ms) if span.ended_ms is not None else None,
        "ended_ms": span.ended_ms,
        "is_live": span.ended_ms is None,
        "duration_s": span.window.length_ms / SECOND_MS,
        "untracked_s": (first - span.started_ms) / SECOND_MS,
    }


def missing(raw: RawRange, fig: Figures, segments: Sequence[Segment]) -> list[str]:
    """What the stream has none of (its figures are zeros)."""
    kinds = {p.type for p in fig.paid} | {s.type for s in raw.social}
    absent = {
        "no activity changes": not segments,
        "no viewer counts": not raw.viewers,
        "no chat": fig.chat == 0,
        "no donations": "donation" not in kinds,
        "no bits": "bits" not in kinds,
        "no subs": not kinds & SUB_TYPES,
        "no follows": "follow" not in kinds,
        "no raids": "raid" not in kinds,
    }
    return [item for item, is_absent in absent.items() if is_absent]


def social_counts(social: Sequence[Social]) -> dict[str, int]:
    """``follows``, ``raids`` and ``raid_viewers`` (``social`` is already in range)."""
    raids = [s for s in social if s.type == "raid"]
    return {
        "follows": sum(1 for s in social if s.type == "follow"),
        "raids": len(raids),
        "raid_viewers": sum(s.count for s in raids),
    }


def paid_counts(paid: Sequence[Paid]) -> dict[str, Any]:
    """Sub, bits and donation counts, and revenue by kind."""
    cents = Cents.of(paid)
    return {
        "new_subs": sum(p.count for p in paid if p.type == "sub"),
        "resubs": sum(p.count for p in paid if p.type == "resub"),
        "gifted_subs": sum(p.count for p in paid if p.type == "gift"),
        "bits": sum(p.bits for p in paid),
        "donations_count": sum(1 for p in paid if p.type == "donation"),
        "revenue": Revenue(
            donations_usd=usd(cents.donations),
            bits_usd=usd(cents.bits),
            subs_usd=usd(cents.subs),
            total_usd=usd(cents.total),
        ),
    }


def activity_reports(
    raw: RawRange, span: Span, segments: Sequence[Segment]
) -> list[ActivityReport]:
    """One report per activity, most time on air first (then by name)."""
    windows: dict[str, list[Window]] = defaultdict(list)
    for s in segments:
        windows[s.activity].append(segment_window(s, span))
    stream_ms = span.window.length_ms
    reports = [activity_report(raw, name, w, stream_ms) for name, w in windows.items()]
    return sorted(reports, key=lambda report: (-report.on_air_s, report.activity))


def activity_report(
    raw: RawRange, activity: str, windows: Sequence[Window], stream_ms: int
) -> ActivityReport:
    """Figures of one activity over its segments' ``windows``.

    ``mean_engagement`` is the mean over every whole minute of its segments, i.e. the
    segments' means weighted by their whole minutes.
    """
    fig = figures(raw, windows)
    cents = Cents.of(fig.paid).total
    return ActivityReport(
        activity=activity,
        segments=len(windows),
        on_air_s=fig.duration_ms / SECOND_MS,
        share=round(fig.duration_ms / stream_ms, 4) if stream_ms else 0.0,
        chat_messages=fig.chat,
        chat_velocity=per_minute(fig.chat, fig.duration_ms),
        unique_chatters=fig.unique_chatters,
        revenue_usd=usd(cents),
        revenue_per_hour_usd=usd_per_hour(cents, fig.duration_ms),
        avg_viewers=viewer_figures(fig)["avg_viewers"],
        mean_engagement=mean_score(fig.scores),
    )


def top_chatters(chatters: Counter[str]) -> list[TopChatter]:
    """The 10 chatters with most messages (ties by name)."""
    ranked = sorted(chatters.items(), key=lambda item: (-item[1], item[0]))[:TOP_N]
    return [TopChatter(user=user, messages=count) for user, count in ranked]


def top_donors(paid: Sequence[Paid]) -> list[TopDonor]:
    """The 10 users who gave most in donations and bits (ties by name)."""
    cents: Counter[str] = Counter()
    for p in paid:
        if p.type in DONATION_TYPES:
            cents[p.user] += p.cents
    ranked = sorted(cents.items(), key=lambda item: (-item[1], item[0]))[:TOP_N]
    return [TopDonor(user=user, usd=usd(total)) for user, total in ranked]


def viewer_series(raw: RawRange) -> list[ViewerPoint]:
    """Viewer samples inside the range (none before it), in time order."""
    return [
        ViewerPoint(ts=format_ms(ts), ts_ms=ts, count=count)
        for ts, count in raw.viewers
        if raw.start_ms <= ts < raw.end_ms
    ]


def chat_series(raw: RawRange, window: Window | None = None) -> list[ChatPoint]:
    """Messages in each clock minute overlapping the range, zeros included.

    The first and last minutes count only the seconds inside the range; with a
    ``window``, the minutes are those of its chatters (see :attr:`Window.chatter_stop_ms`).
    """
    stop = window.chatter_stop_ms if window is not None else raw.end_ms
    return [
        ChatPoint(
            ts=format_ms(minute * MINUTE_MS),
            ts_ms=minute * MINUTE_MS,
            messages_per_min=raw.chat_per_min.get(minute, 0),
        )
        for minute in overlapping_minutes(raw.start_ms, stop)
    ]


def revenue_series(paid: Sequence[Paid]) -> list[RevenuePoint]:
    """Each paid event in time order with the running total, USD."""
    points, total = [], 0
    for p in paid:
        total += p.cents
        points.append(
            RevenuePoint(
                ts=format_ms(p.ts_ms),
                ts_ms=p.ts_ms,
                type=p.type,
                amount_usd=usd(p.cents),
                cumulative_usd=usd(total),
            )
        )
    return points
