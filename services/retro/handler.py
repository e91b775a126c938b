"""The retro worker's handler: ``events:lifecycle`` in consumer group ``retro``.

* ``stream_started``: the bandit's state is kept as the stream's "before" snapshot
  (HSETNX on the transaction, so the first one wins and it commits with the ack).
* ``stream_ended``, in this order, each step safe to repeat:

  1. wait (at most ``RETRO_CATCHUP_TIMEOUT_S``) until analytics has caught up to the
     end: it applied this ``stream_ended``, its channel clock reached the end, and
     its consumer group has consumed and acked every entry of every event stream
     published before this one (entry ids compare across streams: Redis stamps
     them with its own clock). If it has not by then, the report says so and the
     retro leaves the bandit alone rather than score segments from partial figures;
  2. keep a "before" snapshot if the stream has none (the retro did not see it
     start), *before* any update, so a rebuild reads the same one;
  3. the stream-level bandit update: :meth:`SegmentScorer.score_ready` with grace 0,
     which scores each segment of the stream not scored yet, keyed by its segment id
     in ``update_once``: the orchestrator's online scoring and this pass share the
     tokens, so whoever comes first scores a segment and nobody scores it twice
     (see docs/bandit.md); then the bandit's JSON backup is saved;
  4. build the report from Redis (a pure function of the state), write the files,
     print it once, and queue the report and its index entry on the transaction.

A crash anywhere before the commit leaves the entry pending; the next attempt
repeats every step and each is idempotent (the scores by their tokens).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Sequence
from statistics import fmean
from typing import TextIO

from prometheus_client import Counter
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError

from services.retro.html import render_html
from services.retro.model import BanditSnapshot, Posterior, RetroReport, assemble
from services.retro.report import render_markdown
from services.retro.settings import RetroSettings
from services.retro.store import ReportStore
from shared.bandit import bandit_factory
from shared.clock import epoch_ms, format_ms
from shared.consumer import Delivery, default_consumer_name
from shared.events import StreamEndedEvent, StreamStartedEvent
from shared.keys import Keys
from shared.logs import channel_context
from shared.readmodel.lifecycle import timeline
from shared.readmodel.models import SegmentReport
from shared.readmodel.ranges import Paid
from shared.readmodel.summary import stream_summary
from shared.rewards import SegmentScorer

log = logging.getLogger("services.retro")
GROUP = "retro"
ANALYTICS_GROUP = "analytics"
POLL_S = 0.1
STOPPING_WAIT_S = 2.0
PAID_CHUNK = 1000
SCORE_MAX_AGE_S = 7 * 86_400
"""A ``stream_ended`` entry older than this (by its entry id, i.e. when it was published)
is history: reported without waiting for analytics and without a bandit update."""

REPORTS = Counter("streamloop_retro_reports_total", "Post-stream reports built.", ["channel"])
SCORED = Counter(
    "streamloop_retro_segments_scored_total",
    "Segments the retro's stream-level pass scored (the orchestrator had not).",
    ["channel"],
)


def entry_key(entry_id: str) -> tuple[int, int]:
    """A stream entry id (``ms-seq``) as a sortable pair."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class RetroHandler:
    """Reports every stream that ends (see the module doc)."""

    def __init__(
        self,
        redis: Redis,
        settings: RetroSettings,
        *,
        stop: asyncio.Event | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.keys: Keys = settings.keys
        self.stop = stop
        self.bandits = bandit_factory(redis, settings)
        self.scorer = SegmentScorer(
            redis,
            self.keys,
            self.bandits,
            min_segment_s=settings.min_segment_s,
            grace_s=0,
            state_path=settings.bandit_state_path,
            chunks=settings.score_chunks,
            revenue_prior_s=settings.reward_revenue_prior_s,
        )
        consumer = settings.consumer_name or default_consumer_name()
        stdout = (out or sys.stdout) if settings.retro_print else None
        self.store = ReportStore(redis, self.keys, settings.retro_dir, stdout, consumer)
        self.reports: list[str] = []
        self.scored = 0

    async def handle(self, batch: Sequence[Delivery], tx: Pipeline) -> None:
        """Queue the effects of the batch's stream starts and ends on ``tx``."""
        started: dict[tuple[str, str], BanditSnapshot] = {}  # this batch's, not committed yet
        for delivery in batch:
            event = delivery.event
            if isinstance(event, StreamStartedEvent):
                with channel_context(event.channel):
                    snapshot = await self.on_started(event, tx)
                started.setdefault((event.channel, event.stream_id), snapshot)
            elif isinstance(event, StreamEndedEvent):
                with channel_context(event.channel):
                    early = started.get((event.channel, event.stream_id))
                    await self.on_ended(event, delivery.entry_id, tx, early)

    # ------------------------------------------------------------------ start

    async def on_started(self, event: StreamStartedEvent, tx: Pipeline) -> BanditSnapshot:
        """Keep the bandit's state as this stream's "before" (first snapshot wins)."""
        snapshot = await self.take_snapshot(event.channel, event.stream_id, "stream_start")
        self.store.queue_snapshot(tx, self.keys, event.channel, event.stream_id, snapshot)
        return snapshot

    async def take_snapshot(self, channel: str, stream_id: str, taken: str) -> BanditSnapshot:
        """The bandit now, and how many of the stream's segments it has already scored."""
        state = await self.bandits(channel).state()
        segments = (await timeline(self.redis, self.keys, channel, stream_id)).segments
        already = await self.applied(channel, [s.segment_id for s in segments])
        return BanditSnapshot.model_validate(
            {
                "taken": taken,
                "arms": {arm: Posterior.of(s) for arm, s in state.items()},
                "already_scored": len(already),
            }
        )

    async def applied(self, channel: str, segment_ids: Sequence[str]) -> list[str]:
        """Those of ``segment_ids`` whose bandit update has been applied."""
        if not segment_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for segment_id in segment_ids:
                pipe.exists(self.keys.bandit_applied(channel, segment_id))
            found = await pipe.execute()
        return [s for s, hit in zip(segment_ids, found, strict=True) if hit]

    # -------------------------------------------------------------------- end

    async def on_ended(
        self,
        event: StreamEndedEvent,
        entry_id: str,
        tx: Pipeline,
        started: BanditSnapshot | None = None,
    ) -> None:
        """Score what is left, build the report, store it (see the module doc).

        ``started`` is the snapshot of a ``stream_started`` earlier in the same batch.
        """
        channel, stream_id = event.channel, event.stream_id
        end_ms = epoch_ms(event.ts)
        age_s = time.time() - entry_key(entry_id)[0] / 1000
        old = age_s > SCORE_MAX_AGE_S
        if old:  # history (a new group reads the stream from its start): no wait, no scoring
            problems = await self.analytics_lag(event, entry_id)
        else:
            problems = await self.wait_for_analytics(event, entry_id)
        before = await self.store.snapshot(channel, stream_id)
        if before is None:
            snapshot = started or await self.take_snapshot(channel, stream_id, "stream_end")
            before = await self.store.keep_snapshot(channel, stream_id, snapshot)
        applied = 0
        notes = []
        if old:
            notes.append(
                f"This stream_ended was published {age_s / 86_400:.0f} days before the retro "
                "read it, so the retro left the bandit alone: the markers that keep a segment "
                "from being scored twice last 30 days."
            )
        elif problems:
            log.warning("%s: not scoring %s: %s", channel, stream_id, "; ".join(problems))
        else:
            applied = await self.score(channel, stream_id)
        await self.save_bandit(channel)
        report = await self.build(channel, stream_id, before, problems, notes)
        markdown, html = render_markdown(report), render_html(report)
        md_path, _ = await self.store.write_files(report, markdown, html)
        printed = await self.store.print_once(report, markdown)
        ended_ms = report.summary.ended_ms if report.summary.ended_ms is not None else end_ms
        self.store.queue(tx, report, markdown, html, ended_ms)
        self.reports.append(f"{channel}/{stream_id}")
        self.scored += applied
        REPORTS.labels(channel).inc()
        SCORED.labels(channel).inc(applied)
        log.info(
            "%s: retro of %s written to %s and .html (%s; %d segment(s) scored at stream end, "
            "%d of %d scored in all%s)",
            channel,
            stream_id,
            md_path,
            "complete" if report.complete else "incomplete: " + "; ".join(report.missing[:3]),
            applied,
            report.segments_scored,
            len(report.segments),
            "" if printed else "; already printed",
        )

    async def score(self, channel: str, stream_id: str) -> int:
        """The stream-level bandit update: score every segment not scored yet."""
        return await self.scorer.score_ready(channel, stream_id)

    async def save_bandit(self, channel: str) -> None:
        """Save the channel's bandit to its JSON backup (a failure is logged, not fatal)."""
        try:
            await self.bandits(channel).save(self.settings.bandit_state_path)
        except OSError as error:
            log.error(
                "%s: could not save the bandit to %s: %s",
                channel,
                self.settings.bandit_state_path,
                error,
            )

    async def build(
        self,
        channel: str,
        stream_id: str,
        before: BanditSnapshot,
        problems: Sequence[str],
        notes: Sequence[str] = (),
    ) -> RetroReport:
        """The report of the stream from what Redis holds now."""
        summary = await stream_summary(self.redis, self.keys, channel, stream_id)
        bandit = self.bandits(channel)
        ids = [s.segment_id for s in summary.segments]
        donations: list[Paid] = []
        if summary.found and summary.started_ms is not None:
            stop = summary.started_ms + round(summary.duration_s * 1000)
            # Closed at the end: a donation at the instant of stream_ended is the stream's.
            donations = await self.paid(channel, summary.started_ms, stop, closed=True)
        return assemble(
            summary,
            before=before,
            after=await bandit.state(),
            scored=await self.applied(channel, ids),
            rewards=await self.segment_rewards(channel, summary.segments),
            donations=donations,
            problems=problems,
            min_segment_s=self.settings.min_segment_s,
            notes=notes,
        )

    async def segment_rewards(
        self, channel: str, segments: Sequence[SegmentReport]
    ) -> dict[str, float]:
        """Per segment id, the mean reward of its scored chunks (the segment's own reward
        when it is one chunk, or chunks are off); segments with none are absent."""
        chunks = {
            s.segment_id: [c.token for c in self.scorer.ready_chunks(s, s.end_ms)]
            for s in segments
            if s.end_ms is not None
        }
        tokens = [token for tokens in chunks.values() for token in tokens]
        found = await self.bandits(channel).rewards(tokens)
        means = {}
        for segment_id, tokens in chunks.items():
            values = [found[token] for token in tokens if token in found]
            if values:
                means[segment_id] = fmean(values)
        return means

    async def paid(self, channel: str, start_ms: int, end_ms: int, *, closed: bool) -> list[Paid]:
        """Paid events of ``[start_ms, end_ms)`` (``]`` when ``closed``), with their messages."""
        analytics = self.keys.analytics(channel)
        upper = str(end_ms) if closed else f"({end_ms}"
        ids = [str(i) for i in await self.redis.zrangebyscore(analytics.paid, start_ms, upper)]
        out: list[Paid] = []
        for first in range(0, len(ids), PAID_CHUNK):
            chunk = ids[first : first + PAID_CHUNK]
            records = await self.redis.hmget(analytics.paid_data, chunk)
            out += [Paid.parse(str(r)) for r in records if r]
        return out

    # --------------------------------------------------------- analytics' lag

    async def wait_for_analytics(self, event: StreamEndedEvent, entry_id: str) -> list[str]:
        """Wait until analytics reached the end (see the module doc); what is still missing."""
        deadline = time.monotonic() + self.settings.retro_catchup_timeout_s
        stopping_since: float | None = None
        while True:
            problems = await self.analytics_lag(event, entry_id)
            now = time.monotonic()
            if self.stop is not None and self.stop.is_set() and stopping_since is None:
                stopping_since = now
                deadline = min(deadline, now + STOPPING_WAIT_S)
            if not problems or now >= deadline:
                return problems
            await asyncio.sleep(POLL_S)

    async def analytics_lag(self, event: StreamEndedEvent, entry_id: str) -> list[str]:
        """Why analytics' figures may not yet hold the whole stream (empty: they do)."""
        analytics = self.keys.analytics(event.channel)
        end_ms = epoch_ms(event.ts)
        problems = []
        clock = await self.redis.zscore(analytics.clock, "now")
        if clock is None or clock < end_ms:
            seen = "no events" if clock is None else f"events up to {format_ms(int(clock))}"
            problems.append(
                f"analytics had not caught up to the stream's end ({format_ms(end_ms)}): "
                f"it had {seen} for {event.channel}"
            )
        if not await self.end_applied(event, end_ms):
            problems.append("analytics had not applied this stream_ended event")
        backlog = await self.analytics_backlog(entry_id, event.channel)
        if backlog:
            problems.append(
                "analytics had not consumed every event published before the end "
                f"({', '.join(backlog)})"
            )
        return problems

    async def end_applied(self, event: StreamEndedEvent, end_ms: int) -> bool:
        """True when analytics' lifecycle record holds this ``stream_ended``."""
        lifecycle = self.keys.analytics(event.channel).lifecycle
        for raw in await self.redis.zrangebyscore(lifecycle, end_ms, end_ms):
            record = json.loads(str(raw))
            if (record.get("type"), record.get("id"), record.get("source")) == (
                "stream_ended",
                event.id,
                event.source,
            ):
                return True
        return False

    async def analytics_backlog(self, entry_id: str, channel: str) -> list[str]:
        """Event streams of ``channel``'s partition holding entries up to ``entry_id`` that
        analytics has not acked.

        Entry ids compare across the partition's streams: they are on one node, with one
        clock. A stream without the analytics group (analytics never ran on it) has none.
        """
        behind = []
        for stream in self.keys.partition_streams(self.keys.partitions.of(channel)):
            try:
                groups = await self.redis.xinfo_groups(stream)
            except ResponseError:
                continue  # no such stream
            group = next((g for g in groups if g.get("name") == ANALYTICS_GROUP), None)
            if group is None:
                continue
            last = str(group.get("last-delivered-id") or "0-0")
            unread = entry_key(last) < entry_key(entry_id) and await self.redis.xrange(
                stream, min=f"({last}", max=entry_id, count=1
            )
            pending = await self.redis.xpending_range(
                stream, ANALYTICS_GROUP, min="-", max=entry_id, count=1
            )
            if unread or pending:
                behind.append(f"{stream}: {'unread' if unread else 'unacked'} entries")
        return behind
