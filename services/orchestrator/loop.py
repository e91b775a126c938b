"""The decision loop: for every channel this replica holds, decide once per interval of event time.

Every third of ``LEASE_TTL_MS`` the loop renews the leases it holds and takes free
ones up to its fair share, one script call per partition (``Leases.hold_many``).
Every look (``LOOP_INTERVAL_S`` real seconds) it asks which held channels need a
tick (:mod:`services.orchestrator.due`, again one call per partition), and each of
those gets its own task, so a slow Claude call on one channel never holds up
another or the lease renewals. A look costs a round trip per partition, not per
channel. A decision first claims its slot (one atomic compare-and-set on the
channel's last decision time), so even two replicas briefly believing they hold a
channel decide it once per interval. Slots belong to a stream: a new stream's first
decision never waits on the last one of a stream whose clock ran ahead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from typing import Any

from redis.asyncio import Redis

from services.orchestrator.chat import TwitchChat
from services.orchestrator.decider import Decision, Orchestrator
from services.orchestrator.due import DueChannels, Seen
from services.orchestrator.lease import ChannelLeases
from services.orchestrator.settings import OrchestratorSettings
from shared.clock import from_epoch_ms
from shared.events import ActivityChangedEvent
from shared.publisher import Publisher
from shared.readmodel.lifecycle import StreamState, read_latest_lifecycle, stream_state
from shared.redis_client import CONNECTION_ERRORS
from shared.rewards import SegmentScorer
from shared.waiting import wait_or_stop

log = logging.getLogger("services.orchestrator.loop")
DECISIONS_MAXLEN = 10_000
CLAIM_SLOT = """
local last = tonumber(redis.call('HGET', KEYS[1], 'at_ms') or '-1')
local same_stream = redis.call('HGET', KEYS[1], 'slot_stream') == ARGV[3]
if same_stream and last >= 0 and tonumber(ARGV[1]) - last < tonumber(ARGV[2]) then
  return {0, redis.call('HGETALL', KEYS[1])}
end
redis.call('HSET', KEYS[1], 'at_ms', ARGV[1], 'slot_stream', ARGV[3])
return {1, redis.call('HGETALL', KEYS[1])}
"""
"""Claim the decision slot at ARGV[1] ms: due ARGV[2] ms after the last one of the same
stream ARGV[3]. Another stream's slots never count: its clock may have run ahead. Returns
whether it claimed (1 or 0) and the on-air hash after it (what :func:`on_air` reads)."""


class DecisionLoop:
    """Runs :class:`Orchestrator` on the channels this replica holds (see module doc)."""

    def __init__(
        self,
        redis: Redis,
        settings: OrchestratorSettings,
        orchestrator: Orchestrator,
        publisher: Publisher,
        leases: ChannelLeases,
        scorer: SegmentScorer | None = None,
        chat: TwitchChat | None = None,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = settings.keys
        self.orchestrator = orchestrator
        self.publisher = publisher
        self.leases = leases
        self.scorer = scorer
        self.chat = chat
        self.decisions = 0
        self.held: set[str] = set()
        self.due = DueChannels(redis, self.keys, int(settings.decision_interval_s * 1000))
        self._claim_slot = redis.register_script(CLAIM_SLOT)
        self._scored_head: dict[str, tuple[str, float] | None] = {}
        self._renew_every_s = settings.lease_ttl_ms / 3000
        self._tick_slots = asyncio.Semaphore(settings.tick_concurrency)
        self._renewed_at = -float("inf")

    async def run(self, stop: asyncio.Event) -> None:
        """Hold leases and decide until ``stop``; then give the leases back."""
        running: dict[str, asyncio.Task[None]] = {}
        try:
            while not stop.is_set():
                await self._look(running)
                await wait_or_stop(stop, self.settings.loop_interval_s)
        finally:
            await _cancel(running.values())
            with contextlib.suppress(*CONNECTION_ERRORS):
                await self.leases.release_many(sorted(self.held))
                await self.leases.leave()

    async def _look(self, running: dict[str, asyncio.Task[None]]) -> None:
        try:
            if time.monotonic() - self._renewed_at >= self._renew_every_s:
                await self._hold_fair_share(running)
            await self._start_due(running)
        except CONNECTION_ERRORS as error:
            log.warning("cannot reach Redis to renew leases or look at clocks: %s", error)
            if time.monotonic() - self._renewed_at > self.leases.ttl_ms / 1000:
                await self._drop(set(self.held), running)  # expired by now: others decide

    async def _hold_fair_share(self, running: dict[str, asyncio.Task[None]]) -> None:
        """Renew what we hold up to the fair share, give back the rest, take free channels
        (in this replica's own order) until the share is full."""
        channels = self.settings.channels
        share = await self.leases.fair_share(len(channels))
        mine = [ch for ch in channels if ch in self.held]  # keep what we have first
        excess = mine[share:]
        if excess:
            await self._drop(set(excess), running)
            await self.leases.release_many(excess)
        kept = await self.leases.hold_many(mine[:share])
        lost = set(mine[:share]) - kept
        for channel in sorted(lost):
            log.warning("%s: lost the lease; another replica decides it now", channel)
        await self._drop(lost, running)
        self._renewed_at = time.monotonic()
        free = [ch for ch in self._rotated(channels) if ch not in kept]
        while len(self.held) < share and free:
            tried, free = free[: share - len(self.held)], free[share - len(self.held) :]
            taken = await self.leases.hold_many(tried)
            for channel in taken:
                self.due.forget(channel)  # tick it at once: another replica decided it so far
            self.held |= taken

    async def _drop(self, channels: set[str], running: dict[str, asyncio.Task[None]]) -> None:
        """Stop deciding ``channels``: no longer held, their ticks cancelled."""
        self.held -= channels
        await _cancel([running.pop(ch) for ch in channels if ch in running])
        for channel in channels:
            self.due.forget(channel)

    async def _start_due(self, running: dict[str, asyncio.Task[None]]) -> None:
        """A tick task for every held channel the due check names (none already running)."""
        for channel in [ch for ch, task in running.items() if task.done()]:
            del running[channel]
        idle = [ch for ch in self.settings.channels if ch in self.held and ch not in running]
        for channel in await self.due.due(idle):
            running[channel] = asyncio.create_task(self._guarded_tick(channel))

    def _rotated(self, channels: list[str]) -> list[str]:
        """``channels`` starting at a replica-specific offset, so replicas try different ones."""
        offset = zlib.crc32(self.leases.replica.encode()) % max(1, len(channels))
        return channels[offset:] + channels[:offset]

    async def _guarded_tick(self, channel: str) -> None:
        try:
            async with self._tick_slots:
                await self.tick(channel)
        except CONNECTION_ERRORS as error:
            self.due.forget(channel)
            log.warning("%s: Redis unreachable, decision skipped: %s", channel, error)
        except Exception:
            self.due.forget(channel)
            log.exception("%s: decision failed; will try again next look", channel)

    async def tick(self, channel: str) -> Decision | None:
        """Score ended segments, then decide if the channel is live and its slot is due."""
        now, lifecycle = await read_latest_lifecycle(self.redis, self.keys.analytics(channel))
        await self._score_if_changed(channel, lifecycle)
        state = stream_state(lifecycle)
        ready_ms = self.scorer.ready_at(channel) if self.scorer else None
        if not now or not state.is_live or state.started_ms is None:
            self.due.after_tick(channel, Seen(ready_ms=ready_ms))
            return None
        interval_ms = int(self.settings.decision_interval_s * 1000)
        slot = [self.keys.orchestrator_on_air(channel)]
        claimed, flat = await self._claim_slot(keys=slot, args=[now, interval_ms, state.stream_id])
        ours = dict(zip(flat[::2], flat[1::2], strict=True))
        slot_ms = int(ours["at_ms"]) if "at_ms" in ours else None
        slot_stream = ours.get("slot_stream", "")
        self.due.after_tick(channel, Seen(state.stream_id, slot_ms, slot_stream, ready_ms))
        if not claimed:
            return None
        current, since_ms, chosen_ms = on_air(ours, state)
        chosen_s = (now - chosen_ms) / 1000 if self.settings.commit_segments else None
        decision = await self.orchestrator.decide(
            channel, current, now, (now - since_ms) / 1000, chosen_s=chosen_s
        )
        await self.record(decision, state.stream_id, since_ms, chosen_ms)
        return decision

    async def _score_if_changed(self, channel: str, lifecycle: list[tuple[str, float]]) -> None:
        """Run the scorer when the lifecycle moved on, or while a segment waits for its grace."""
        if self.scorer is None:
            return
        head = lifecycle[0] if lifecycle else None
        if head != self._scored_head.get(channel) or self.scorer.waiting(channel):
            await self.scorer.score_ready(channel)
            self._scored_head[channel] = head

    async def record(
        self, decision: Decision, stream_id: str, since_ms: int, chosen_ms: int | None = None
    ) -> None:
        """Remember what is on air and when it was last chosen, log the decision, offer its
        chat line to Twitch (never waiting on it), publish ``activity_changed`` on a switch.
        A ``dwell`` keeps the last choice's time."""
        on_air_since = decision.at_ms if decision.action == "switch" else since_ms
        chosen = since_ms if chosen_ms is None else chosen_ms
        if decision.decided_by != "dwell":
            chosen = decision.at_ms
        record = decision.fields() | {"replica": self.leases.replica, "stream_id": stream_id}
        async with self.redis.pipeline(transaction=False) as pipe:  # one slot, one round trip
            pipe.hset(
                self.keys.orchestrator_on_air(decision.channel),
                mapping={
                    "activity": decision.activity,
                    "since_ms": on_air_since,
                    "chosen_ms": chosen,
                    "stream_id": stream_id,
                },
            )
            pipe.xadd(
                self.keys.decisions(decision.channel),
                record,  # type: ignore[arg-type]
                maxlen=DECISIONS_MAXLEN,
                approximate=True,
            )
            await pipe.execute()
        self.decisions += 1
        if self.chat is not None and decision.chat_message:
            self.chat.offer(decision.channel, decision.chat_message)
        if decision.action == "switch":
            await self.publisher.publish(switch_event(decision, stream_id))
        log.info(
            "%s: %s %s (by %s: %s)",
            decision.channel,
            decision.action,
            decision.activity,
            decision.decided_by,
            decision.reason,
        )


def on_air(ours: dict[str, str], state: StreamState) -> tuple[str, int, int]:
    """What is on air, since when, and when it was last chosen (kept or switched to):
    our own last decision (``ours``: the on-air hash), or the stream's lifecycle.

    A stream that went live with no activity announced (Twitch's ``stream.online``
    names none) has nothing on air since its start: ``("", started_ms, started_ms)``,
    and the decision made on it is the opening one (a switch, so ``activity_changed``
    goes out).
    """
    assert state.started_ms is not None
    since = int(ours.get("since_ms", -1))
    same_stream = ours.get("stream_id") == state.stream_id
    ours_is_newer = state.activity_since_ms is None or since > state.activity_since_ms
    if same_stream and ours.get("activity") and ours_is_newer:
        return ours["activity"], since, max(since, int(ours.get("chosen_ms", since)))
    if state.activity_since_ms is None:
        return "", state.started_ms, state.started_ms
    chosen = int(ours.get("chosen_ms", -1)) if same_stream else -1
    if ours.get("activity") != state.activity:
        chosen = -1
    return state.activity, state.activity_since_ms, max(state.activity_since_ms, chosen)


def switch_event(decision: Decision, stream_id: str) -> ActivityChangedEvent:
    """The ``activity_changed`` a switch publishes (its id makes a retry land once)."""
    return ActivityChangedEvent(
        id=f"decision:{decision.channel}:{decision.at_ms}",
        channel=decision.channel,
        ts=from_epoch_ms(decision.at_ms),
        source="orchestrator",
        stream_id=stream_id,
        activity=decision.activity,
        previous=decision.previous,
        reason=decision.reason,
        decided_by=decision.decided_by,
    )


async def _cancel(tasks: Any) -> None:
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
