"""The soak's judgements: is Redis memory flat, is its growth bounded, did a process grow."""

from __future__ import annotations

import bisect
import statistics
from collections.abc import Sequence

from tools.soak import MB
from tools.soak.run import Outcome
from tools.soak.sampling import Sample

FLAT_PCT_PER_MIN = 1.0
"""Redis memory is "flat" when its least-squares slope over the second half of the run is
under this share of its mean over that half, per minute (10 minutes at 1 %/min: < 10 %)."""
RSS_FLAT_PCT = 5.0
"""A process's RSS is "flat" when it grew less than this over the last 5 minutes."""
TAIL_S = 300.0


def slope_per_min(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of ``(seconds, value)`` points, per minute."""
    if len(points) < 2:
        return 0.0
    xs, ys = zip(*points, strict=True)
    if len(set(xs)) < 2:
        return 0.0
    return statistics.linear_regression(xs, ys).slope * 60


def halves(samples: Sequence[Sample], load_s: float) -> tuple[list[Sample], list[Sample]]:
    """Samples of the first and the second half of the load (t = 0 idle sample left out)."""
    loaded = [s for s in samples if 0 < s.t_s <= load_s + 1]
    half = load_s / 2
    return [s for s in loaded if s.t_s <= half], [s for s in loaded if s.t_s >= half]


def at_or_before(samples: Sequence[Sample], t_s: float) -> Sample:
    """The last sample taken at or before ``t_s`` (the first one if none)."""
    times = [s.t_s for s in samples]
    return samples[max(0, bisect.bisect_right(times, t_s + 0.5) - 1)]


def cpu_share(first: Sample, last: Sample, name: str) -> float:
    """Share of one core process ``name`` used between two samples."""
    span = last.t_s - first.t_s
    return (last.cpu_s[name] - first.cpu_s[name]) / span if span > 0 else 0.0


def rest_share(first: Sample, last: Sample) -> float:
    """Share of one core used by everything on the machine but the soak's processes."""
    span = last.t_s - first.t_s
    if span <= 0:
        return 0.0
    ours = sum(last.cpu_s[n] - first.cpu_s[n] for n in last.cpu_s)
    return (last.machine_cpu_s - first.machine_cpu_s - ours) / span


def memory_verdict(outcome: Outcome) -> tuple[str, bool]:
    """The Redis memory paragraph and whether memory was flat."""
    first, second = halves(outcome.samples, outcome.load_s)
    parts = []
    flat = True
    for label, part in (("first half", first), ("second half", second)):
        points = [(s.t_s, s.used_memory / MB) for s in part]
        slope = slope_per_min(points)
        mean = statistics.fmean(y for _, y in points) if points else 0.0
        pct = slope / mean * 100 if mean else 0.0
        parts.append(f"{label} {slope:+.2f} MB/min ({pct:+.2f} %/min of its mean {mean:.1f} MB)")
        if label == "second half":
            flat = pct < FLAT_PCT_PER_MIN
    start, end = first[0] if first else outcome.samples[0], outcome.end_of_load
    verdict = "**flat**" if flat else "**NOT flat**"
    text = (
        f"Redis `used_memory` from {start.used_memory / MB:.1f} MB at {start.t_s:.0f} s to "
        f"{end.used_memory / MB:.1f} MB at the end of the load; least-squares slope "
        + "; ".join(parts)
        + f". Flat means a second-half slope under {FLAT_PCT_PER_MIN:g} %/min of the mean: "
        f"{verdict}."
    )
    return text, flat


RECORD_KEYS = ("paid", "paid_data", "social")
"""Per-channel analytics keys holding one record per paid event or follow: the stream's
record, which the retro report reads once at its end; they expire ``STATE_TTL_S`` after
the channel's last event."""


def growth_accounting(outcome: Outcome) -> tuple[str, bool]:
    """Redis growth between the censuses split into what is bounded by design and the rest.

    Streams below their caps grow until their cap; the per-stream records grow with
    the paid events and follows of the stream (bounded by its length and the state
    TTL); dedupe markers grow until their TTL. Everything else must not grow.
    """
    early, late = outcome.censuses[0], outcome.censuses[-1]
    minutes = (late.t_s - early.t_s) / 60 or 1.0
    keys = outcome.settings.keys
    streams = set(keys.event_streams())
    records = {
        getattr(keys.analytics(ch), name)
        for ch in outcome.settings.channels
        for name in RECORD_KEYS
    }

    def grown(names: set[str]) -> float:
        return (
            sum(
                late.keys[k].bytes - (early.keys[k].bytes if k in early.keys else 0)
                for k in names
                if k in late.keys
            )
            / MB
            / minutes
        )

    in_streams, in_records = grown(streams), grown(records)
    markers = ((late.dedupe_count - early.dedupe_count) * outcome.marker_bytes) / MB / minutes
    total = (late.used_memory - early.used_memory) / MB / minutes
    rest = total - in_streams - in_records - markers
    bounded = rest / (late.used_memory / MB) * 100 < FLAT_PCT_PER_MIN
    text = (
        f"Growth between the censuses, {total:+.2f} MB/min in all: event streams below their caps "
        f"{in_streams:+.2f}, the streams' paid and follow records (`{'`, `'.join(RECORD_KEYS)}`, "
        f"read by the retro report) {in_records:+.2f}, dedupe markers {markers:+.2f} (each "
        f"{outcome.marker_bytes:.0f} B of `used_memory`, measured before the load), everything "
        f"else {rest:+.2f} MB/min: "
        + ("**bounded**" if bounded else "**NOT bounded**")
        + f" (everything else under {FLAT_PCT_PER_MIN:g} %/min of `used_memory`)."
    )
    return text, bounded
