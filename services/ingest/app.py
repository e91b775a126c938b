"""The ingest HTTP app: webhooks, health and metrics; its lifespan runs the event sources."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

from fastapi import FastAPI
from redis.asyncio import Redis

from services.ingest.buffer import PublishBuffer
from services.ingest.settings import IngestSettings
from services.ingest.sources.eventsub import LiveStreams
from services.ingest.state import IngestState
from services.ingest.webhooks import donation as donation_webhook
from services.ingest.webhooks import twitch as twitch_webhook
from shared import ops
from shared.app_state import set_state
from shared.exposure import guard_hosts
from shared.lifespan import ServiceLifespan
from shared.publisher import PUBLISHED, Publisher
from shared.tasks import finish_tasks

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


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI, settings: IngestSettings) -> AsyncIterator[None]:
    """Own the Redis client, the outage buffer and one task per source; stop them in order.

    Sources stop first, then the buffer gets its flush time, then Redis closes
    (``shared.lifespan``).
    """
    async with ServiceLifespan(
        "ingest", settings, log, stop_timeout_s=SOURCE_STOP_TIMEOUT_S
    ) as life:
        redis, stop = life.redis, life.stop
        publisher = Publisher(redis, settings)
        buffer = PublishBuffer(
            publisher, settings.ingest_buffer_max_events, Path(settings.ingest_spill_dir)
        )
        buffer.take_over_journals()
        sources_done = asyncio.Event()
        sources = build_sources(settings, redis, publisher, buffer)
        live = LiveStreams()  # the Twitch webhook's; the socket source keeps its own
        set_state(app, IngestState(redis, life.supervisor, settings, publisher, buffer, live))
        for name, source in sources.items():
            life.start(name, functools.partial(source.run, stop))  # restarted if it dies
        flush_s = settings.ingest_buffer_flush_s
        draining = life.supervisor.start(
            "buffer", lambda: buffer.run(sources_done, flush_s), sources_done
        )
        drained: dict[str, str] = {}

        async def drain_buffer() -> None:
            """Once the sources are done, give the buffer its flush time."""
            sources_done.set()
            drained.update(await finish_tasks([draining], flush_s + 1))

        life.on_close(drain_buffer)
        life.summary(lambda: summary(life.outcomes, drained.get("buffer", "not run"), buffer))
        log.info(
            "ingest up: sources %s, channels %s",
            ",".join(settings.ingest_sources),
            ",".join(settings.channels),
        )
        yield


def summary(sources: dict[str, str], drained: str, buffer: PublishBuffer) -> str:
    """The summary line's figures: events published, how each source and the buffer ended."""
    return (
        f"{_published_total()} events published; sources "
        f"{', '.join(f'{name} {how}' for name, how in sources.items()) or 'none'}; outage buffer "
        f"{drained} (held {buffer.totals.buffered}, taken over {buffer.totals.taken_over}, "
        f"refused {buffer.totals.overflowed}, left in the journal {buffer.totals.spilled})"
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
    app = FastAPI(
        title="streamloop-ingest",
        version="0.1.0",
        lifespan=functools.partial(lifespan, settings=settings),
    )
    guard_hosts(app, settings)
    app.include_router(ops.router)
    if "webhooks" in settings.ingest_sources:
        app.include_router(donation_webhook.router)
        app.include_router(twitch_webhook.router)
    return app
