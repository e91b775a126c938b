"""Section ``soak`` of ``docs/benchmarks.md``: the run's settings, tables and verdicts."""

from __future__ import annotations

from shared.keys import Stream
from tools.run_local import SERVICES
from tools.soak import MB
from tools.soak.load import CHANNEL_SHARES
from tools.soak.run import Outcome
from tools.soak.sampling import KeyInfo, Sample
from tools.soak.verdicts import (
    RSS_FLAT_PCT,
    TAIL_S,
    at_or_before,
    cpu_share,
    growth_accounting,
    memory_verdict,
    rest_share,
    slope_per_min,
)

SERVICE_NAMES = tuple(service.name for service in SERVICES)


def census_rows(outcome: Outcome) -> list[str]:
    """Where Redis memory went: the dedupe markers and the largest keys, early vs at the end."""
    early, late = outcome.censuses[0], outcome.censuses[-1]
    rows = [
        f"| key | type | entries at {early.t_s:.0f} s | entries at {late.t_s:.0f} s "
        f"| MB at {early.t_s:.0f} s | MB at {late.t_s:.0f} s | growth MB/min |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    minutes = (late.t_s - early.t_s) / 60 or 1.0
    dedupe_early = early.dedupe_count * early.dedupe_bytes_each
    dedupe_late = late.dedupe_count * late.dedupe_bytes_each
    rows.append(
        f"| `dedupe:*` ({late.dedupe_bytes_each:.0f} B each by `MEMORY USAGE`, "
        f"TTL {outcome.settings.dedupe_chat_ttl_s:,} s for chat, follows, viewer counts; "
        f"{outcome.settings.dedupe_ttl_s:,} s for the rest) | string | {early.dedupe_count:,} "
        f"| {late.dedupe_count:,} | {dedupe_early / MB:.1f} | {dedupe_late / MB:.1f} "
        f"| {(dedupe_late - dedupe_early) / MB / minutes:+.2f} |"
    )
    ranked = sorted(late.keys.items(), key=lambda item: item[1].bytes, reverse=True)
    shown = 0
    rest_early = early.other_bytes
    rest_late = late.other_bytes
    for key, info in ranked:
        before = early.keys.get(key, KeyInfo(info.type, 0, 0))
        if shown >= 16 or info.bytes < 64 * 1024:
            continue
        shown += 1
        rest_early -= before.bytes
        rest_late -= info.bytes
        rows.append(
            f"| `{key}` | {info.type} | {before.length:,} | {info.length:,} "
            f"| {before.bytes / MB:.2f} | {info.bytes / MB:.2f} "
            f"| {(info.bytes - before.bytes) / MB / minutes:+.3f} |"
        )
    others = len(late.keys) - shown
    rows.append(
        f"| {others} other keys | | | | {rest_early / MB:.2f} | {rest_late / MB:.2f} "
        f"| {(rest_late - rest_early) / MB / minutes:+.3f} |"
    )
    accounted_early = early.other_bytes + dedupe_early
    accounted_late = late.other_bytes + dedupe_late
    rows.append(
        f"| `used_memory` (all, with allocator overhead) | | | | {early.used_memory / MB:.1f} "
        f"| {late.used_memory / MB:.1f} "
        f"| {(late.used_memory - early.used_memory) / MB / minutes:+.2f} |"
    )
    rows.append("")
    rows.append(
        f"`MEMORY USAGE` accounts for {accounted_early / MB:.1f} MB then {accounted_late / MB:.1f} "
        "MB of it (the rest is the server's own structures: the main dictionary, the expires "
        "dictionary, client buffers, the Lua and replication machinery)."
    )
    return rows


def process_rows(outcome: Outcome) -> tuple[list[str], list[str]]:
    """The per-process RSS and CPU table, and the names of processes that grew."""
    samples = [s for s in outcome.samples if s.t_s <= outcome.load_s + 1]
    loaded = [s for s in samples if s.t_s > 0]
    first_loaded = loaded[0]
    end = outcome.end_of_load
    tail_from = max(0.0, outcome.load_s - TAIL_S)
    tail_start = at_or_before(samples, tail_from)
    mid = at_or_before(samples, outcome.load_s / 2)
    tail_label = (
        f"last {TAIL_S / 60:.0f} min" if outcome.load_s >= 2 * TAIL_S else f"from {tail_from:.0f} s"
    )
    rows = [
        f"| process | RSS idle MB | RSS at {first_loaded.t_s:.0f} s | RSS end | RSS max "
        f"| growth {tail_label} | slope {tail_label} MB/min | CPU 1st half | CPU 2nd half |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    grew = []
    for name in end.rss_kb:
        tail = [(s.t_s, s.rss_kb[name] / 1024) for s in samples if s.t_s >= tail_start.t_s]
        start_mb = tail_start.rss_kb[name] / 1024
        end_mb = end.rss_kb[name] / 1024
        growth = end_mb - start_mb
        pct = growth / start_mb * 100 if start_mb else 0.0
        if pct >= RSS_FLAT_PCT and name in SERVICE_NAMES:
            grew.append(f"{name} (+{growth:.1f} MB, {pct:+.1f} %)")
        rows.append(
            f"| {name} | {samples[0].rss_kb[name] / 1024:.1f} "
            f"| {first_loaded.rss_kb[name] / 1024:.1f} | {end_mb:.1f} "
            f"| {max(s.rss_kb[name] for s in samples) / 1024:.1f} "
            f"| {growth:+.1f} ({pct:+.1f} %) | {slope_per_min(tail):+.2f} "
            f"| {cpu_share(samples[0], mid, name):.0%} | {cpu_share(mid, end, name):.0%} |"
        )
    rows.append(
        f"| rest of the machine (other people's work) | | | | | | "
        f"| {rest_share(samples[0], mid):.0%} | {rest_share(mid, end):.0%} |"
    )
    return rows, grew


def sample_rows(outcome: Outcome) -> list[str]:
    """The samples table: every sample, or one a minute for runs of 5 minutes or more."""
    samples = [s for s in outcome.samples if s.t_s <= outcome.load_s + 1]
    step = 60.0 if outcome.load_s >= 300 else outcome.args.sample_s
    chosen: list[Sample] = []
    for sample in samples:
        if not chosen or sample.t_s >= chosen[-1].t_s + step - 1 or sample is samples[-1]:
            chosen.append(sample)
    names = [n for n in samples[0].rss_kb if n not in ("soak (load)",)]
    rows = [
        "| t s | events/s | Redis MB | keys | event-stream entries | analytics lag | "
        + " | ".join(f"{n} RSS MB" for n in names)
        + " |",
        "|---:|---:|---:|---:|---:|---:|" + "---:|" * len(names),
    ]
    previous = samples[0]
    for sample in chosen:
        span = sample.t_s - previous.t_s
        rate = (sample.published - previous.published) / span if span > 0 else 0.0
        rows.append(
            f"| {sample.t_s:.0f} | {rate:,.0f} | {sample.used_memory / MB:.1f} | {sample.keys:,} "
            f"| {sample.stream_total:,} | {sample.lag.get('analytics', 0):,} | "
            + " | ".join(f"{sample.rss_kb[n] / 1024:.1f}" for n in names)
            + " |"
        )
        previous = sample
    return rows


def stream_rows(outcome: Outcome) -> list[str]:
    """Each event stream's length against its cap."""
    end = outcome.end_of_load
    minutes = outcome.load_s / 60
    rows = [
        "| stream (channels) | cap (MAXLEN ~) | entries at the end | state |",
        "|---|---:|---:|---|",
    ]
    keys = outcome.settings.keys
    by_partition = keys.partitions.channels_by_partition(outcome.settings.channels)
    for key, length in end.stream_len.items():
        cap = outcome.settings.stream_maxlen(keys.kind_of(key))
        channels = ", ".join(by_partition.get(keys.partition_of_stream(key), []))
        if length >= cap:
            state = "at its cap (trimmed)"
        else:
            per_min = length / minutes if minutes else 0.0
            hours = cap / per_min / 60 if per_min else float("inf")
            state = f"below its cap: {per_min:,.0f} entries/min, cap reached after ~{hours:,.1f} h"
        rows.append(f"| `{key}` ({channels}) | {cap:,} | {length:,} | {state} |")
    return rows


def render(outcome: Outcome) -> str:
    """The Markdown body of section ``soak``."""
    memory_text, flat = memory_verdict(outcome)
    accounting, bounded = growth_accounting(outcome)
    process_table, grew = process_rows(outcome)
    lines = [
        *intro(outcome),
        "",
        "Samples (the first row is before the load; the events/s column is the rate since "
        "the row above):",
        "",
        *sample_rows(outcome),
        "",
        "### Redis memory",
        "",
        memory_text,
        "",
        accounting,
        "",
        *stream_rows(outcome),
        "",
        "Where the memory is (`MEMORY USAGE ... SAMPLES 0` of every key but the dedupe "
        "markers, which are counted and 500 of them measured):",
        "",
        *census_rows(outcome),
        "",
        "### Processes",
        "",
        "RSS from `/proc/PID/status` (VmRSS); CPU as a share of one core.",
        "",
        *process_table,
        "",
        f"RSS growth over the last {TAIL_S / 60:.0f} minutes under {RSS_FLAT_PCT:g} % counts as "
        "flat: " + (("**grew**: " + ", ".join(grew)) if grew else "**every process flat**") + ".",
        "",
        "### Consumers",
        "",
        *consumer_lines(outcome),
        "",
        verdict(flat, bounded, grew),
    ]
    return "\n".join(lines)


def intro(outcome: Outcome) -> list[str]:
    """What ran and how: the opening paragraph and the settings table."""
    args, settings, totals = outcome.args, outcome.settings, outcome.totals
    achieved = outcome.end_of_load.published / outcome.load_s
    channels = ", ".join(
        f"`{c}` {share:.0%}"
        for c, share in zip(settings.channels, CHANNEL_SHARES[len(settings.channels)], strict=True)
    )
    mix = ", ".join(
        f"{kind} {count:,} ({count / max(1, sum(totals.by_type.values())):.2%})"
        for kind, count in totals.by_type.most_common()
    )
    caps = ", ".join(f"{k.value} {settings.stream_maxlen(k):,}" for k in Stream)
    return [
        f"`make soak` (`tools/soak/`): {args.rate:,} events/s asked for {args.duration_s:.0f} s "
        f"against an embedded redis-server {outcome.redis_version} (AOF "
        f"{'on, appendfsync everysec' if args.aof else 'off'}, no RDB saves), the four services "
        "as subprocesses (`python -m services.<name>`, default settings; ingest with "
        "`INGEST_SOURCES=webhooks`, so the simulator is off; the orchestrator on the bandit "
        "alone). The load comes from the soak process through `Publisher` (validate, dedupe, "
        "XADD), paced per 100 ms tick, every `ts` the wall clock, built by the simulator's own "
        "event makers with the default scenario's relative rates for the activity on air (the "
        "orchestrator's activity changes switch the mix). **Ran on 2 CPU cores shared with other "
        "people's test runs**: see the last row of the process table.",
        "",
        "| setting | value |",
        "|---|---|",
        f"| rate | {args.rate:,} events/s asked, {achieved:,.0f} achieved "
        f"({outcome.end_of_load.published:,} events in {outcome.load_s:.0f} s; "
        f"{totals.late_ticks} late ticks) |",
        f"| channels | {channels} of the rate, each opened with `stream_started` and closed "
        "with `stream_ended` |",
        f"| mix published | {mix} |",
        f"| activity switches followed | {totals.activity_switches} |",
        f"| stream caps (`STREAM_MAXLEN_*`, each partition's stream) | {caps} |",
        f"| dedupe marker TTL | `DEDUPE_CHAT_TTL_S` {settings.dedupe_chat_ttl_s:,} s "
        f"(chat, follows, viewer counts), `DEDUPE_TTL_S` {settings.dedupe_ttl_s:,} s (the rest) |",
        f"| sampling | every {args.sample_s:g} s; census of the keys at "
        f"{outcome.censuses[0].t_s:.0f} s and {outcome.censuses[-1].t_s:.0f} s |",
    ]


def consumer_lines(outcome: Outcome) -> list[str]:
    """Lag at the end of the load, the drain, what was published, read and applied, the exits."""
    totals, end, drained = outcome.totals, outcome.end_of_load, outcome.drained
    consumed = outcome.consumed.get("analytics", 0)
    return [
        f"At the end of the load: analytics lag {end.lag.get('analytics', 0):,}, pending "
        f"{end.pending.get('analytics', 0):,}; retro lag {end.lag.get('retro', 0):,}. "
        f"Drained (lag and pending 0 in every group) {outcome.drain_s:.1f} s after the last "
        f"publish; {outcome.reports} retro report(s) written.",
        "",
        f"Published by the load: {totals.published:,} ({totals.duplicates} duplicates); "
        f"entries added to the event streams: {outcome.entries_added:,} (the "
        f"{outcome.entries_added - totals.published:,} more are the orchestrator's activity "
        f"changes); read by the analytics group: {consumed:,}; "
        f"applied to analytics state (sum of the channel versions): {outcome.applied:,}; "
        f"left pending: {drained.pending.get('analytics', 0)}.",
        "",
        "Every service stopped on SIGINT: "
        + "; ".join(f"{text}" for text in outcome.exits.values())
        + ". Their summary lines:",
        "",
        *[
            f"    {line.split(': ', 1)[-1] if line else f'{name}: (no summary line)'}"
            for name, line in outcome.summaries.items()
        ],
    ]


def verdict(flat: bool, bounded: bool, grew: list[str]) -> str:
    """The closing line: Redis memory flat, its growth bounded, process memory flat."""
    return (
        "Verdict: Redis memory "
        + ("flat" if flat else "**NOT flat**")
        + (
            "; its growth outside capped streams, per-stream records and dedupe markers "
            + ("bounded" if bounded else "**NOT bounded**")
        )
        + "; process memory "
        + ("flat" if not grew else "**grew** (" + ", ".join(grew) + ")")
        + "."
    )
