"""The ingest HTTP app: webhooks, health and metrics; its lifespan runs the event sources."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

from fastapi import FastAPI
from redis.asyncio import Redis

from services.ingest.buffer import PublishBuffer
from services.ingest.settings import IngestSettings
from services.ingest.webhooks import donation as donation_webhook
from services.ingest.webhooks import twitch as twitch_webhook
from shared import ops
from shared.exposure import guard_hosts
from shared.publisher import PUBLISHED, Publisher
from shared.redis_client import connect_settings
from shared.tasks import Supervisor, finish_tasks

log = logging.getLogger("services.ingest")
SOURCE_STOP_TIMEOUT_S = 8.0


class Source(Protocol):
    """An event source the lifespan runs until shutdown."""

    async def run(self, stop: asyncio.Event) -> None:
        """Publish events until ``stop`` is set, then clean up and return."""


def build_sources(
    settings: IngestSettings, redis: Redis, publisher: Publisher, buffer: PublishBuffer
) -> dict[str, Source]:
    """The socket and simulated sources named in ``INGEST_SOURCES`` (webhooks need none)."""
    sources: dict[str, Source] = {}
    if "sim" in settings.ingest_sources:
        from services.ingest.sources.simulator import SimSource

        sources["sim"] = SimSource(redis, settings, publisher)
    if "twitch" in settings.ingest_sources:
        from services.ingest.sources.twitch import TwitchSource

        sources["twitch"] = TwitchSource(settings, buffer)
    return sources


def supervise_source(
    supervisor: Supervisor, name: str, source: Source, stop: asyncio.Event
) -> asyncio.Task[None]:
    """Run ``source`` under ``supervisor`` (restarted if it dies; ``/healthz`` names it)."""
    return supervisor.start(name, lambda: source.run(stop), stop)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Own the Redis client, the outage buffer and one task per source; stop them in order.

    Sources stop first, then the buffer gets its flush time, then Redis closes.
    """
    settings: IngestSettings = app.state.settings
    started = time.monotonic()
    redis = connect_settings(settings)
    app.state.redis = redis
    app.state.publisher = publisher = Publisher(redis, settings)
    app.state.buffer = buffer = PublishBuffer(
        publisher, settings.ingest_buffer_max_events, Path(settings.ingest_spill_dir)
    )
    buffer.take_over_journals()
    stop, sources_done = asyncio.Event(), asyncio.Event()
    sources = build_sources(settings, redis, publisher, buffer)
    supervisor = app.state.supervisor = Supervisor()
    tasks = [supervise_source(supervisor, name, source, stop) for name, source in sources.items()]
    flush_s = settings.ingest_buffer_flush_s
    draining = supervisor.start("buffer", lambda: buffer.run(sources_done, flush_s), sources_done)
    log.info(
        "ingest up: sources %s, channels %s",
        ",".join(settings.ingest_sources),
        ",".join(settings.channels),
    )
    try:
        yield
    finally:
        stop.set()
        outcomes = await finish_tasks(tasks, SOURCE_STOP_TIMEOUT_S)
        sources_done.set()
        drained = await finish_tasks([draining], settings.ingest_buffer_flush_s + 1)
        await redis.aclose()
        log.info(
            "ingest stopped after %.1f s: %d events published; sources %s; outage buffer %s "
            "(held %d, taken over %d, refused %d, left in the journal %d); redis closed",
            time.monotonic() - started,
            _published_total(),
            ", ".join(f"{name} {how}" for name, how in outcomes.items()) or "none",
            drained["buffer"],
            buffer.totals.buffered,
            buffer.totals.taken_over,
            buffer.totals.overflowed,
            buffer.totals.spilled,
        )


def _published_total() -> int:
    return int(
        sum(
            sample.value
            for metric in PUBLISHED.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
        )
    )


def create_app(settings: IngestSettings) -> FastAPI:
    """The ingest app for ``settings`` (read once at start)."""
    app = FastAPI(title="streamloop-ingest", lifespan=lifespan, version="0.1.0")
    app.state.settings = settings
    guard_hosts(app, settings)
    app.include_router(ops.router)
    if "webhooks" in settings.ingest_sources:
        app.include_router(donation_webhook.router)
        app.include_router(twitch_webhook.router)
    return app
