"""Figures of time ranges: totals, engagement and the segment stats rewards are made of.

From a :class:`~shared.readmodel.ranges.RawRange`, :func:`figures` sums one or more
disjoint :class:`Window` s; :func:`stats_of` and :func:`segment_stats` give the
:class:`~shared.readmodel.models.SegmentStats` of one range (the orchestrator's
rewards and retro's per-segment table). :func:`engagement_score` is the one
engagement formula, shared with analytics' live metrics.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import Any

from redis.asyncio import Redis

from shared.clock import format_ms
from shared.keys import Keys
from shared.money import usd, usd_per_hour
from shared.readmodel.models import SegmentStats
from shared.readmodel.paid_sums import PaidSums
from shared.readmodel.ranges import (
    HOUR_MS,
    MINUTE_MS,
    SECOND_MS,
    Paid,
    RawRange,
    ceil_div,
    in_force,
    peak_viewers,
    read_range,
    viewer_ms,
)

SUB_TYPES = frozenset({"sub", "resub", "gift"})


def engagement_score(chat_velocity: float, viewers: int, chatters: int, paid: int) -> float:
    """0-100 from chat per viewer, share of viewers chatting, and paid events per 100 viewers.

    Each part saturates smoothly (1 - e^-x/k) so no single signal can exceed its weight:
    45 % chat messages per viewer per minute (k = 0.1), 35 % unique chatters of the
    window per viewer (k = 0.15), 20 % paid events of the window per 100 viewers (k = 2).
    """
    audience = max(viewers, chatters, 1)
    chat = 1 - math.exp(-(chat_velocity / audience) / 0.1)
    chatting = 1 - math.exp(-(chatters / audience) / 0.15)
    paying = 1 - math.exp(-(paid * 100 / audience) / 2)
    return round(100 * (0.45 * chat + 0.35 * chatting + 0.20 * paying), 1)


@dataclass(frozen=True)
class Window:
    """A time range: ``[start_ms, end_ms)``, or ``[start_ms, end_ms]`` when ``closed``.

    A live stream and its on-air segment are closed at the clock, so the latest
    events (those at "now") count; their length is still ``end_ms - start_ms``.
    """

    start_ms: int
    end_ms: int
    closed: bool = False
    whole_first_second: bool = False
    """Count chat from the start of the second ``start_ms`` falls in: a stream's first
    second belongs to it, so a message at the very instant it starts counts."""

    @property
    def chat_start_ms(self) -> int:
        """Where chat (kept per second) is counted from."""
        if self.whole_first_second:
            return self.start_ms // SECOND_MS * SECOND_MS
        return self.start_ms

    @property
    def stop_ms(self) -> int:
        """Exclusive bound for the events in the window."""
        return self.end_ms + 1 if self.closed else self.end_ms

    @property
    def chatter_stop_ms(self) -> int:
        """Exclusive bound of the minutes whose chatters count: a window closed at a whole
        minute does not take in the next minute (its chatters are after the end)."""
        if self.closed and self.end_ms % MINUTE_MS == 0 and self.end_ms > self.start_ms:
            return self.end_ms
        return self.stop_ms

    @property
    def length_ms(self) -> int:
        """Duration, ms."""
        return self.end_ms - self.start_ms


@dataclass(frozen=True)
class Figures:
    """Raw totals over a set of disjoint windows (one segment, or all of an activity's)."""

    duration_ms: int
    chat: int
    chatters: Counter[str]
    paid: list[Paid]
    viewer_ms: int
    peak_viewers: int
    scores: list[float]

    @property
    def unique_chatters(self) -> int:
        """Distinct chatters, at most one per message (minute resolution can over-count)."""
        return min(len(self.chatters), self.chat)


def figures(raw: RawRange, windows: Sequence[Window]) -> Figures:
    """Totals of ``raw`` over ``windows`` (each inside ``raw``'s range).

    Events count up to each window's ``stop_ms``; durations, the viewer integral and
    whole minutes run to its ``end_ms``.
    """
    minutes = {m for w in windows for m in overlapping_minutes(w.start_ms, w.chatter_stop_ms)}
    chat = sum(raw.chat.count(w.chat_start_ms, w.stop_ms) for w in windows)
    return Figures(
        duration_ms=sum(w.length_ms for w in windows),
        chat=chat,
        chatters=_sum_users(raw.chatters.get(m, {}) for m in minutes) if chat else Counter(),
        paid=[p for p in raw.paid if any(w.start_ms <= p.ts_ms < w.stop_ms for w in windows)],
        viewer_ms=sum(viewer_ms(raw.viewers, w.start_ms, w.end_ms) for w in windows),
        peak_viewers=max(
            (peak_viewers(raw.viewers, w.start_ms, w.stop_ms) for w in windows), default=0
        ),
        scores=[score for w in windows for score in minute_scores(raw, w.start_ms, w.end_ms)],
    )


def _sum_users(per_minute: Iterable[dict[str, int]]) -> Counter[str]:
    """user -> messages summed over minutes."""
    total: Counter[str] = Counter()
    for users in per_minute:
        total.update(users)
    return total


def overlapping_minutes(start_ms: int, end_ms: int) -> range:
    """Epoch minutes that overlap ``[start_ms, end_ms)``."""
    return range(start_ms // MINUTE_MS, ceil_div(end_ms, MINUTE_MS))


def minute_scores(raw: RawRange, start_ms: int, end_ms: int) -> list[float]:
    """Engagement of each whole clock minute inside ``[start_ms, end_ms)``.

    For minute m: ``engagement_score(chat messages in m, viewers in force at m's start,
    distinct chatters in m, paid events in m)``.
    """
    whole = range(ceil_div(start_ms, MINUTE_MS), end_ms // MINUTE_MS)
    return [
        engagement_score(
            raw.chat_per_min.get(minute, 0),
            in_force(raw.viewers, minute * MINUTE_MS),
            len(raw.chatters.get(minute, {})),
            raw.paid_per_min.get(minute, 0),
        )
        for minute in whole
    ]


@dataclass(frozen=True)
class Cents:
    """Paid amounts by kind, integer USD cents."""

    donations: int
    bits: int
    subs: int

    @classmethod
    def of(cls, paid: Iterable[Paid]) -> Cents:
        """Sum ``paid`` by kind."""
        totals: Counter[str] = Counter()
        for p in paid:
            totals["subs" if p.type in SUB_TYPES else p.type] += p.cents
        return cls(totals["donation"], totals["bits"], totals["subs"])

    @property
    def total(self) -> int:
        """All kinds."""
        return self.donations + self.bits + self.subs


def stats_of(raw: RawRange, window: Window) -> SegmentStats:
    """:class:`SegmentStats` of ``window`` from ``raw`` (which covers it)."""
    fig = figures(raw, [window])
    paid = window_paid(raw, window, fig)
    return SegmentStats(
        start=format_ms(window.start_ms),
        end=format_ms(window.end_ms),
        start_ms=window.start_ms,
        end_ms=window.end_ms,
        duration_s=fig.duration_ms / SECOND_MS,
        chat_messages=fig.chat,
        chat_velocity=per_minute(fig.chat, fig.duration_ms),
        unique_chatters=fig.unique_chatters,
        revenue_usd=usd(paid.cents),
        revenue_per_hour_usd=usd_per_hour(paid.cents, fig.duration_ms),
        donations_usd=usd(paid.donation_cents),
        bits=paid.bits,
        bits_usd=usd(paid.bits_cents),
        subs=paid.subs,
        subs_usd=usd(paid.sub_cents),
        paid_events=paid.events,
        **viewer_figures(fig),
        mean_engagement=mean_score(fig.scores),
        engagement_minutes=len(fig.scores),
    )


def window_paid(raw: RawRange, window: Window, fig: Figures) -> PaidSums:
    """Paid totals of ``window``: ``raw``'s totals when read without records, else ``fig``'s."""
    if raw.paid_totals is None:
        return PaidSums.of(paid_record(p) for p in fig.paid)
    if (window.start_ms, window.stop_ms) != (raw.start_ms, raw.end_ms):
        raise ValueError("paid totals cover the range read, not a part of it")
    return raw.paid_totals


def paid_record(p: Paid) -> dict[str, Any]:
    """The fields of ``p``'s ``paid_data`` record that its totals depend on."""
    return {"type": p.type, "cents": p.cents, "bits": p.bits, "count": p.count}


def viewer_figures(fig: Figures) -> dict[str, Any]:
    """``avg_viewers``, ``peak_viewers`` and ``hours_watched`` of ``fig``."""
    return {
        "avg_viewers": round(fig.viewer_ms / fig.duration_ms, 2) if fig.duration_ms else 0.0,
        "peak_viewers": fig.peak_viewers,
        "hours_watched": round(fig.viewer_ms / HOUR_MS, 3),
    }


def mean_score(scores: Sequence[float]) -> float | None:
    """Mean of per-minute engagement scores, one decimal; None without any minute."""
    return round(fmean(scores), 1) if scores else None


def per_minute(count: int, duration_ms: int) -> float:
    """``count`` per minute of ``duration_ms`` (0 for an empty range), two decimals."""
    return round(count * MINUTE_MS / duration_ms, 2) if duration_ms else 0.0


async def segment_stats(
    redis: Redis, keys: Keys, channel: str, start_ms: int, end_ms: int
) -> SegmentStats:
    """Figures of ``channel`` over ``[start_ms, end_ms)`` (epoch ms, event time).

    * ``chat_messages``: exact, from the per-second chat counts; a second belongs to
      the range its start falls in (exact when the bounds are whole seconds).
      ``chat_velocity`` = messages per minute of the range.
    * ``unique_chatters``: minute resolution; everyone who wrote in a clock minute
      overlapping the range (a partly covered minute counts whole), capped at
      ``chat_messages`` (so a range without messages has no chatters).
    * ``revenue_usd`` (donations + bits + subs), ``donations_usd``, ``bits``, ``subs``
      (sum of sub counts, a gift of 5 is 5): exact, paid events with ``ts`` in range;
      ``revenue_per_hour_usd`` = revenue_usd x 3600 / duration_s. Read as totals
      (``shared.readmodel.paid_sums``), so the cost follows the range's minutes, not its paid
      events: the orchestrator's reward baseline spans the whole stream so far.
    * ``avg_viewers``: time-weighted; the count in force at an instant is the latest
      sample at or before it (before the first sample, the first).
      ``peak_viewers``: the highest count in force; ``hours_watched``: viewer-hours.
    * ``mean_engagement``: the mean over each whole clock minute inside the range of
      ``engagement_score(messages that minute, viewers in force at its start,
      distinct chatters that minute, paid events that minute)``; null when the range
      holds no whole minute (``engagement_minutes`` says how many it is over).
    """
    raw = await read_range(redis, keys.analytics(channel), start_ms, end_ms, records=False)
    return stats_of(raw, Window(start_ms, end_ms))
