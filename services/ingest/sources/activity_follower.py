"""The simulator's ear on the lifecycle streams: blocking readers for every channel.

The simulated audience reacts to what is on air, so each broadcast must learn of
the orchestrator's ``activity_changed`` for its channel. A follower tails the
lifecycle streams (``events:{pNN}:lifecycle`` of the partitions holding simulated
channels) with one ``XREAD BLOCK`` from where they stood when the broadcasts began,
and hands each channel its own changes: Redis sees one waiting read whatever the
number of channels (each channel used to poll the stream ten times a second), and a
change reaches its broadcast as soon as it is published. A multi-key XREAD cannot
span the slots of a Redis Cluster, so there the simulator runs one follower per
partition instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pydantic
from redis.asyncio import Redis

from services.ingest.sources.recording import stream_entries
from shared.events import ActivityChangedEvent, parse_fields
from shared.reconnect import Backoff
from shared.redis_client import CONNECTION_ERRORS

log = logging.getLogger("services.ingest.sim")

READ_COUNT = 1000
BLOCK_MS = 500
"""Longest wait of one read: how soon the follower notices that the broadcasts are over."""

Listener = Callable[[ActivityChangedEvent], None]


class ActivityFollower:
    """Tails each stream of ``cursors`` (key -> entry id to read after) and gives every
    ``activity_changed`` to ``listen``."""

    def __init__(self, redis: Redis, cursors: dict[str, str], listen: Listener) -> None:
        self.redis = redis
        self.cursors = dict(cursors)
        self.listen = listen
        self.reads = 0

    async def run(self, done: asyncio.Event) -> None:
        """Follow until ``done`` is set; an unreachable Redis is retried with backoff."""
        backoff = Backoff()
        while not done.is_set():
            try:
                streams: dict[Any, Any] = self.cursors
                reply = await self.redis.xread(streams, count=READ_COUNT, block=BLOCK_MS)
            except CONNECTION_ERRORS as error:
                if done.is_set():  # the broadcasts are over: no reason to wait for Redis
                    return
                log.warning(
                    "cannot read the lifecycle streams (%s); again in %.1f s",
                    error,
                    backoff.delay_s,
                )
                await backoff.wait(done)
                continue
            backoff.reset()
            self.reads += 1
            self._hand_out(reply)

    def _hand_out(self, reply: Any) -> None:
        for stream, entry_id, fields in stream_entries(reply):
            self.cursors[stream] = entry_id
            try:
                event = parse_fields(fields)
            except pydantic.ValidationError:
                continue
            if isinstance(event, ActivityChangedEvent):
                try:
                    self.listen(event)
                except Exception as error:  # one entry must not stop the broadcasts
                    log.warning("skipped %s %s: %r", stream, entry_id, error)
