"""One consumer-group runner per partition, for the partitions this replica works.

The event streams are split into partitions (``events:{pNN}:<kind>``, see
:mod:`shared.partitions`); a :class:`~shared.consumer.ConsumerRunner` reads one
partition, so that on Redis Cluster each runner's reads and commits touch one slot.
:class:`PartitionedConsumer` keeps a runner running for every partition that
``partitions()`` names (all of them, or the ones a lease holder holds), starting
and stopping runners as that set changes, and sums their counts. A runner that
stops for a partition leaves its pending entries to the next holder, which claims
them after ``CONSUMER_CLAIM_MIN_IDLE_MS`` (the fence keeps that exactly-once).

With ``claim_at_start`` (the partitions come from leases, so whoever else has
entries pending there no longer holds the partition), a runner first takes over
every other consumer's pending entries of its partition at once, idle or not,
instead of waiting ``CONSUMER_CLAIM_MIN_IDLE_MS``: the claim bumps the previous
owner's fence, so if that owner is still finishing a batch its commit fails and
the batch counts once, here. Without leases (every replica reads every partition)
that would steal a live peer's batches, so it is off by default.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from redis.asyncio import Redis

from shared.consumer import ConsumerRunner, Handler, RunSummary, default_consumer_name
from shared.keys import Stream
from shared.redis_client import CONNECTION_ERRORS
from shared.settings import ConsumerSettings

log = logging.getLogger(__name__)

RESCAN_INTERVAL_S = 1.0
"""How often the set of partitions to work is looked at again."""


@dataclass
class _Running:
    runner: ConsumerRunner
    stop: asyncio.Event
    task: asyncio.Task[RunSummary]


@dataclass
class PartitionedSummary:
    """The summed counts of every runner this consumer ran (same fields as ``RunSummary``)."""

    finished: list[RunSummary] = field(default_factory=list)
    running: list[RunSummary] = field(default_factory=list)

    def _total(self, name: str) -> int:
        return sum(getattr(s, name) for s in self.finished + self.running)

    @property
    def handled(self) -> int:
        """Entries handled and acked."""
        return self._total("handled")

    @property
    def dead_lettered(self) -> int:
        """Entries dead-lettered."""
        return self._total("dead_lettered")

    @property
    def claimed(self) -> int:
        """Entries taken over from dead consumers."""
        return self._total("claimed")

    @property
    def fenced_batches(self) -> int:
        """Batches dropped because another consumer took them over."""
        return self._total("fenced_batches")

    @property
    def reconnects(self) -> int:
        """Times a runner found Redis unreachable."""
        return self._total("reconnects")


class PartitionedConsumer:
    """Runs a :class:`ConsumerRunner` for each partition ``partitions()`` returns."""

    def __init__(
        self,
        redis: Redis,
        settings: ConsumerSettings,
        group: str,
        handler: Handler,
        streams: Iterable[Stream] | None = None,
        *,
        partitions: Callable[[], Iterable[int]] | None = None,
        claim_at_start: bool = False,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.group = group
        self.handler = handler
        self.kinds = list(streams) if streams is not None else None
        self.consumer = settings.consumer_name or default_consumer_name()
        self._partitions = partitions or settings.partitioning.all
        self.claim_at_start = claim_at_start
        self._wake = asyncio.Event()
        self._running: dict[int, _Running] = {}
        self._finished: list[RunSummary] = []

    @property
    def summary(self) -> PartitionedSummary:
        """Counts of every runner so far, finished or running."""
        running = [r.runner.summary for r in self._running.values()]
        return PartitionedSummary(list(self._finished), running)

    @property
    def partitions(self) -> list[int]:
        """The partitions with a runner now (not counting runners told to stop)."""
        return sorted(p for p, running in self._running.items() if not running.stop.is_set())

    def runner(self, partition: int) -> ConsumerRunner:
        """A runner for ``partition`` (not started)."""
        return ConsumerRunner(
            self.redis, self.settings, self.group, self.handler, self.kinds, partition=partition
        )

    async def run(self, stop: asyncio.Event) -> PartitionedSummary:
        """Keep one runner per wanted partition until ``stop``; then stop them all.

        A runner that dies (``ConsumerGroupMissing`` or a bug) takes this task down
        with it, so the supervisor restarts the whole consumer and health says so.
        """
        try:
            while True:
                self._rebalance(set(self._partitions()))
                self._raise_if_a_runner_died()
                if await self._pause(stop):
                    break
        finally:
            await self._stop(list(self._running))
        return self.summary

    def wake(self) -> None:
        """Look at ``partitions()`` again now (the lease keeper calls this when they change)."""
        self._wake.set()

    async def _pause(self, stop: asyncio.Event) -> bool:
        """Wait ``RESCAN_INTERVAL_S``, or less if stopped or woken; True when stopped."""
        waits = [asyncio.create_task(stop.wait()), asyncio.create_task(self._wake.wait())]
        try:
            await asyncio.wait(waits, timeout=RESCAN_INTERVAL_S, return_when="FIRST_COMPLETED")
        finally:
            for waiting in waits:
                waiting.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        self._wake.clear()
        return stop.is_set()

    def _rebalance(self, wanted: set[int]) -> None:
        for partition in sorted(wanted - set(self._running)):
            self._start(partition)
        gone = sorted(set(self._running) - wanted)
        for partition in gone:
            self._running[partition].stop.set()

    def _start(self, partition: int) -> None:
        runner = self.runner(partition)
        stop = asyncio.Event()
        task = asyncio.create_task(self._work(runner, stop), name=f"{self.group}-p{partition:02d}")
        self._running[partition] = _Running(runner, stop, task)

    async def _work(self, runner: ConsumerRunner, stop: asyncio.Event) -> RunSummary:
        if self.claim_at_start:
            await self.claim_now(runner.partition)
        return await runner.run(stop)

    async def claim_now(self, partition: int) -> int:
        """Take over (and handle) every other consumer's pending entries of ``partition`` now.

        A one-off runner with ``claim_min_idle_ms`` 0 and the same consumer name (so the
        same fence) reclaims until nothing of anyone else's is left pending; its counts join
        the summary. Redis being unreachable just leaves the entries to the regular,
        idle-based reclaim.
        """
        eager = ConsumerRunner(
            self.redis,
            self.settings.model_copy(update={"consumer_claim_min_idle_ms": 0}),
            self.group,
            self.handler,
            self.kinds,
            partition=partition,
        )
        try:
            await eager.ensure_groups()
            while await eager.reclaim():
                pass
        except CONNECTION_ERRORS as error:
            log.warning("%s: partition %d: no claim at start (%s)", self.group, partition, error)
        self._finished.append(eager.summary)
        return eager.summary.claimed

    def _raise_if_a_runner_died(self) -> None:
        for partition, running in list(self._running.items()):
            if not running.task.done():
                continue
            del self._running[partition]
            self._finished.append(running.runner.summary)
            if not running.stop.is_set():
                running.task.result()  # re-raises what killed it
                raise RuntimeError(f"consumer for partition {partition} stopped by itself")

    async def _stop(self, partitions: list[int]) -> None:
        """Let every runner finish its batch in hand (cancelled with this task if it is)."""
        stopping = [self._running.pop(partition) for partition in partitions]
        for running in stopping:
            running.stop.set()
        await asyncio.gather(*(r.task for r in stopping), return_exceptions=True)
        self._finished.extend(r.runner.summary for r in stopping)
