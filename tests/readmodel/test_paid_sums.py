"""Paid sums from per-minute totals, on a real Redis: always the brute-force sums of the events.

Events are seeded-random donations, cheers and subs, many on or next to minute
boundaries, some delivered twice; ranges are random, many of them cut on or next
to a minute boundary or an event. Every figure read through ``shared.readmodel.paid_sums``
(directly, in metrics, in segment stats) must equal the sum over the distinct
events, to the cent.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from redis.asyncio import Redis

from services.analytics.handler import apply_events, member, paid_record, ts_ms
from services.analytics.metrics import HOUR_MS, MetricsComputer, Windows, local_day_ms
from services.analytics.settings import AnalyticsSettings
from shared.events import (
    BitsEvent,
    DonationEvent,
    EventBase,
    StreamEndedEvent,
    StreamStartedEvent,
    SubEvent,
    ViewerCountEvent,
)
from shared.keys import AnalyticsKeys, Keys
from shared.readmodel.figures import Window, segment_stats, stats_of
from shared.readmodel.paid_sums import (
    FOREVER_MS,
    MINUTE_MS,
    PaidSums,
    bucket_increments,
    paid_sums,
    paid_sums_and_newest,
    rebuild_minutes,
)
from shared.readmodel.ranges import read_range

DAY_START = datetime(2026, 2, 27, tzinfo=UTC)
BASE_MS = round(DAY_START.timestamp() * 1000)
PaidEvent = DonationEvent | BitsEvent | SubEvent


@pytest.fixture
def settings(make_settings) -> AnalyticsSettings:
    return make_settings(AnalyticsSettings)


def when(at_ms: int) -> datetime:
    return datetime.fromtimestamp(at_ms / 1000, UTC)


def near_minute(rng: random.Random, first_ms: int, minutes: int) -> int:
    """A ms on, just before or just after a minute boundary, or anywhere in a minute."""
    boundary = first_ms + rng.randrange(minutes) * MINUTE_MS
    return boundary + rng.choice([0, 0, 1, -1, 2, rng.randrange(MINUTE_MS)])


def paid_event(rng: random.Random, n: int, at_ms: int, channel: str = "demo") -> PaidEvent:
    """One random donation, cheer or sub (id ``p{n}``) at ``at_ms``."""
    c: dict[str, Any] = {"channel": channel, "source": rng.choice(["sim", "twitch"])}
    c |= {"id": f"p{n}", "ts": when(at_ms), "user": f"u{rng.randrange(20)}"}
    kind = rng.choice(["donation", "bits", "sub", "resub", "gift"])
    if kind == "donation":
        return DonationEvent(**c, amount=Decimal(rng.randrange(0, 100_000)) / 100)
    if kind == "bits":
        return BitsEvent(**c, bits=rng.randrange(1, 20_000))
    count = rng.randrange(1, 30) if kind == "gift" else 1
    return SubEvent(**c, type=kind, tier="1000", count=count, amount=Decimal(250 * count) / 100)


def paid_events(
    rng: random.Random, count: int, first_ms: int, minutes: int, channel: str = "demo"
) -> list[PaidEvent]:
    """``count`` distinct paid events over ``minutes`` minutes from ``first_ms``."""
    return [paid_event(rng, n, near_minute(rng, first_ms, minutes), channel) for n in range(count)]


def with_replays(rng: random.Random, events: Sequence[EventBase]) -> list[EventBase]:
    """``events`` plus a second copy of a fifth of them, shuffled."""
    again = rng.sample(list(events), len(events) // 5)
    return rng.sample([*events, *again], len(events) + len(again))


async def apply_in_batches(
    redis: Redis, keys: Keys, rng: random.Random, events: Sequence[EventBase]
) -> None:
    """Apply ``events`` in order, in batches of random size (one transaction each)."""
    rest = list(events)
    while rest:
        size = rng.randrange(1, 80)
        await apply_events(redis, keys, rest[:size])
        rest = rest[size:]


def brute(events: Sequence[PaidEvent], lo_ms: int, hi_ms: int, exclude: str = "") -> PaidSums:
    """Totals of the events with ``ts`` in ``[lo_ms, hi_ms)``, from their records."""
    return PaidSums.of(
        paid_record(e) for e in events if lo_ms <= ts_ms(e) < hi_ms and member(e) != exclude
    )


def cut(rng: random.Random, events: Sequence[PaidEvent], first_ms: int, minutes: int) -> int:
    """A range bound: at or next to an event, a minute or an hour boundary, or anywhere."""
    pick = rng.randrange(4)
    if pick == 0:
        return ts_ms(rng.choice(events)) + rng.choice([-1, 0, 1])
    if pick == 1:
        return near_minute(rng, first_ms - MINUTE_MS, minutes + 2)
    if pick == 2:
        hour = first_ms + rng.randrange(minutes // 60 + 1) * 60 * MINUTE_MS
        return hour + rng.choice([-MINUTE_MS, -1, 0, 1, MINUTE_MS])
    return first_ms + rng.randrange(-MINUTE_MS, (minutes + 1) * MINUTE_MS)


def ranges(
    rng: random.Random, events: Sequence[PaidEvent], first_ms: int, minutes: int, count: int
) -> list[tuple[int, int]]:
    """Random ``[lo, hi)`` ranges (some empty or inverted), and the unbounded ones."""
    found: list[tuple[int, int]] = []
    for _ in range(count):
        a, b = cut(rng, events, first_ms, minutes), cut(rng, events, first_ms, minutes)
        found.append((min(a, b), max(a, b)) if rng.random() < 0.9 else (max(a, b), min(a, b)))
    return [*found, (0, FOREVER_MS), (first_ms, first_ms), (0, first_ms)]


@pytest.mark.parametrize(
    ("seed", "count", "minutes"),
    [(1, 700, 12), (2, 400, 90), (3, 300, 24 * 60)],
    ids=["dense", "hour", "day"],
)
async def test_range_sums_equal_brute_force_sums(
    redis: Redis, settings: AnalyticsSettings, seed: int, count: int, minutes: int
) -> None:
    rng = random.Random(seed)
    events = paid_events(rng, count, BASE_MS, minutes)
    await apply_in_batches(redis, settings.keys, rng, with_replays(rng, events))
    keys = settings.keys.analytics("demo")
    for lo, hi in ranges(rng, events, BASE_MS, minutes, 300):
        got = await paid_sums(redis, keys, lo, hi)
        assert got == brute(events, lo, hi), (lo, hi)


async def test_a_member_left_out_and_the_newest_records_come_with_the_same_totals(
    redis: Redis, settings: AnalyticsSettings
) -> None:
    rng = random.Random(4)
    events = paid_events(rng, 500, BASE_MS, 10)
    await apply_in_batches(redis, settings.keys, rng, with_replays(rng, events))
    keys = settings.keys.analytics("demo")
    by_time = sorted(events, key=lambda e: (ts_ms(e), member(e)))
    for _ in range(100):
        lo, hi = sorted(cut(rng, events, BASE_MS, 10) for _ in range(2))
        own = member(rng.choice(events))
        assert await paid_sums(redis, keys, lo, hi, exclude=own) == brute(events, lo, hi, own)
        sums, newest = await paid_sums_and_newest(redis, keys, lo, hi, 7)
        inside = [e for e in by_time if lo <= ts_ms(e) < hi]
        assert sums == brute(events, lo, hi)
        assert [json.dumps(paid_record(e)) for e in inside[-7:]] == newest


async def dump_paid(redis: Redis, keys: AnalyticsKeys) -> tuple[Any, ...]:
    """The three paid keys, whole."""
    return (
        await redis.hgetall(keys.paid_minutes),
        await redis.hgetall(keys.paid_data),
        await redis.zrange(keys.paid, 0, -1, withscores=True),
    )


async def test_an_event_applied_twice_is_counted_once(
    redis: Redis, settings: AnalyticsSettings
) -> None:
    rng = random.Random(5)
    events = paid_events(rng, 200, BASE_MS, 5)
    await apply_events(redis, settings.keys, events)
    keys = settings.keys.analytics("demo")
    once = await dump_paid(redis, keys)
    await apply_events(redis, settings.keys, events)  # the same batch again
    await apply_in_batches(redis, settings.keys, rng, rng.sample(events, len(events)))
    await apply_events(redis, settings.keys, [events[0], events[0], events[1]])  # within a batch
    assert await dump_paid(redis, keys) == once
    minutes = {f: int(v) for f, v in once[0].items() if not f.startswith("h")}
    assert sum(n for f, n in minutes.items() if f.endswith(":events")) == len(events)
    assert await paid_sums(redis, keys, 0, FOREVER_MS) == brute(events, 0, FOREVER_MS)


async def test_minute_totals_do_not_depend_on_order_or_batching_and_can_be_rebuilt(
    redis: Redis, settings: AnalyticsSettings
) -> None:
    rng = random.Random(6)
    events = paid_events(rng, 400, BASE_MS, 30)
    twin = [e.model_copy(update={"channel": "twin"}) for e in events]
    await apply_events(redis, settings.keys, events)
    await apply_in_batches(redis, settings.keys, rng, with_replays(rng, twin))
    demo, other = settings.keys.analytics("demo"), settings.keys.analytics("twin")
    incremental = await redis.hgetall(demo.paid_minutes)
    assert incremental == await redis.hgetall(other.paid_minutes)
    assert await rebuild_minutes(redis, demo) == len(events)
    assert await redis.hgetall(demo.paid_minutes) == incremental
    assert 0 < await redis.ttl(demo.paid_minutes) <= 7 * 86_400


# ----------------------------------------------------------------------- metrics


def lifecycle(channel: str, started_ms: int, ended_ms: int | None) -> list[EventBase]:
    c: dict[str, Any] = {"channel": channel, "source": "sim", "stream_id": "s1"}
    found: list[EventBase] = [StreamStartedEvent(**c, id="start", ts=when(started_ms))]
    if ended_ms is not None:
        found.append(StreamEndedEvent(**c, id="end", ts=when(ended_ms)))
    return found


def old_figures(
    events: Sequence[PaidEvent],
    now_ms: int,
    stream: tuple[int, int | None],
    engagement_ms: int,
    zone: ZoneInfo,
) -> dict[str, str]:
    """The paid figures as metrics computed them from every record, before paid_minutes."""
    paid = [paid_record(e) for e in events]
    day_start, day_end = local_day_ms(now_ms, zone)
    started, ended = stream
    today = [p for p in paid if day_start <= p["ts"] < day_end]
    this = [p for p in paid if started <= p["ts"] and (ended is None or p["ts"] <= ended)]
    window = HOUR_MS if ended is not None else min(HOUR_MS, max(now_ms - started, 60_000))
    tips = [p for p in paid if p["type"] in ("donation", "bits") and p["ts"] > now_ms - window]
    subs = sum(int(p.get("count", 0)) for p in this if p["type"] in ("sub", "resub", "gift"))
    return {
        "paid_events_window": str(sum(1 for p in paid if p["ts"] > now_ms - engagement_ms)),
        "revenue_today": f"{sum(int(p['cents']) for p in today) / 100:.2f}",
        "bits_today": str(sum(int(p.get("bits", 0)) for p in today)),
        "subs_count": str(subs),
        "revenue_stream": f"{sum(int(p['cents']) for p in this) / 100:.2f}",
        "donations_per_hour": f"{sum(int(p['cents']) for p in tips) / 100 * HOUR_MS / window:.2f}",
    }


def bounds(now_ms: int, started: int, ended: int | None, zone: ZoneInfo) -> list[int]:
    """Every bound of the metrics' ranges: paid events are put on and next to each."""
    day_start, _ = local_day_ms(now_ms, zone)
    young = min(HOUR_MS, max(now_ms - started, 60_000))
    found = [day_start, started, now_ms - 300_000, now_ms - HOUR_MS, now_ms - young, now_ms]
    return [*found, ended] if ended is not None else found


SCENARIOS = {
    # now (minutes after the day's start), stream start and end (minutes), zone
    "live-new": (600.5, 600.2, None, "UTC"),
    "live-young": (600.5, 571.25, None, "UTC"),
    "live-old": (700.1, 301.7, None, "America/New_York"),
    "ended": (900.9, 200.3, 850.05, "Asia/Kolkata"),
    "after-midnight": (24 * 60 + 3.3, 22 * 60 + 0.4, None, "UTC"),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_metrics_paid_figures_equal_the_sums_over_every_record(
    redis: Redis, settings: AnalyticsSettings, name: str
) -> None:
    now_min, start_min, end_min, zone_name = SCENARIOS[name]
    now_ms = BASE_MS + round(now_min * MINUTE_MS)
    started = BASE_MS + round(start_min * MINUTE_MS)
    ended = None if end_min is None else BASE_MS + round(end_min * MINUTE_MS)
    rng = random.Random(name)
    zone = ZoneInfo(zone_name)
    spread = paid_events(rng, 800, BASE_MS - 120 * MINUTE_MS, 1_700)
    recent = [paid_event(rng, 1_000 + n, now_ms - rng.randrange(400_000)) for n in range(150)]
    edges = [
        paid_event(rng, 2_000 + n, at + d)
        for n, (at, d) in enumerate(
            (at, d) for at in bounds(now_ms, started, ended, zone) for d in (-1, 0, 1)
        )
    ]
    events = [e for e in [*spread, *recent, *edges] if ts_ms(e) <= now_ms]
    clock = ViewerCountEvent(channel="demo", source="sim", id="v", ts=when(now_ms), count=5)
    state = [*lifecycle("demo", started, ended), clock, *with_replays(rng, events)]
    await apply_in_batches(redis, settings.keys, rng, state)
    windows = Windows(60_000, 300_000)
    figures = await MetricsComputer(redis, settings.keys, windows, zone).recompute("demo")
    expected = old_figures(events, now_ms, (started, ended), windows.engagement_ms, zone)
    assert {k: figures[k] for k in expected} == expected


# ------------------------------------------------------------------ segment stats


async def test_segment_stats_from_totals_equal_the_stats_from_every_record(
    redis: Redis, settings: AnalyticsSettings
) -> None:
    rng = random.Random(7)
    events = paid_events(rng, 600, BASE_MS, 45)
    await apply_in_batches(redis, settings.keys, rng, with_replays(rng, events))
    keys = settings.keys.analytics("demo")
    for _ in range(60):
        lo, hi = sorted(cut(rng, events, BASE_MS, 45) for _ in range(2))
        got = await segment_stats(redis, settings.keys, "demo", lo, hi)
        raw = await read_range(redis, keys, lo, hi)
        assert got == stats_of(raw, Window(lo, hi)), (lo, hi)
        assert got.paid_events == brute(events, lo, hi).events


def test_a_record_adds_its_non_zero_totals_to_its_own_minute_and_hour() -> None:
    at = BASE_MS + 59 * MINUTE_MS + 59_999  # the last ms of the day's first hour
    event = BitsEvent(channel="demo", source="sim", id="b", ts=when(at), user="x", bits=7)
    minute, hour = at // MINUTE_MS, at // (60 * MINUTE_MS)
    totals = [("events", 1), ("bits", 7), ("bits_cents", 7)]
    assert bucket_increments(paid_record(event)) == [
        *((f"{minute}:{name}", n) for name, n in totals),
        *((f"h{hour}:{name}", n) for name, n in totals),
    ]
    free = DonationEvent(channel="demo", source="sim", id="d", ts=when(at + 1), user="x", amount=0)
    assert bucket_increments(paid_record(free)) == [
        (f"{minute + 1}:events", 1),
        (f"h{hour + 1}:events", 1),
    ]
