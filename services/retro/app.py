"""The retro app: health and metrics over HTTP; its lifespan runs the lifecycle consumer.

Shutdown (SIGINT/SIGTERM through ``shared.serve``): the runner finishes the batch
in hand, then the lifespan drains what was already on ``events:lifecycle`` when
the signal came (bounded by ``DRAIN_BUDGET_S``), so the ``stream_ended`` that
ingest publishes just before ``make run`` stops retro is reported, and printed,
before the process exits. Whatever is left is handled at the next start: the
group keeps it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI

from services.retro.handler import GROUP, RetroHandler, entry_key
from services.retro.settings import RetroSettings
from services.retro.state import RetroState
from shared import ops
from shared.app_state import set_state
from shared.consumer import ConsumerRunner
from shared.exposure import guard_hosts
from shared.keys import Stream
from shared.partitioned_consumer import PartitionedConsumer
from shared.redis_client import CONNECTION_ERRORS, connect_settings
from shared.tasks import Supervisor, finish_tasks

log = logging.getLogger("services.retro")
STOP_TIMEOUT_S = 6.0
DRAIN_BUDGET_S = 3.0


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI, settings: RetroSettings) -> AsyncIterator[None]:
    """Own Redis and the consumer; on stop finish the batch, drain, log one summary line."""
    started = time.monotonic()
    redis = connect_settings(settings)
    stop = asyncio.Event()
    handler = RetroHandler(redis, settings, stop=stop)
    runner = PartitionedConsumer(redis, settings, GROUP, handler, streams=[Stream.LIFECYCLE])
    supervisor = Supervisor()
    set_state(app, RetroState(redis, supervisor, settings, handler))
    task = supervisor.start("consumer", lambda: runner.run(stop), stop)
    log.info("retro up: consumer %s, reports in %s", runner.consumer, settings.retro_dir)
    try:
        yield
    finally:
        stop.set()
        finished = (await finish_tasks([task], STOP_TIMEOUT_S))["consumer"] == "stopped"
        drained = await drain(runner) if finished else 0
        await redis.aclose()
        log.info(
            "retro stopped after %.1f s: %d lifecycle entries handled (%d drained at exit), "
            "%d dead-lettered, %d report(s) written%s, %d segment(s) scored at stream end; "
            "redis closed",
            time.monotonic() - started,
            runner.summary.handled,
            drained,
            runner.summary.dead_lettered,
            len(handler.reports),
            f" ({', '.join(handler.reports[-5:])})" if handler.reports else "",
            handler.scored,
        )


async def drain(consumer: PartitionedConsumer, budget_s: float = DRAIN_BUDGET_S) -> int:
    """Handle entries already in the streams, until none is left unread or the budget is spent."""
    handled = 0
    try:
        async with asyncio.timeout(budget_s):
            for partition in consumer.settings.partitioning.all():
                runner = consumer.runner(partition)
                while await unread(runner):
                    handled += await runner.step()
            return handled
    except TimeoutError:
        log.warning("stopped draining after %.0f s; the rest waits for the next start", budget_s)
    except CONNECTION_ERRORS as error:
        log.warning("could not drain at exit (Redis unreachable: %s)", error)
    except Exception:
        log.exception("draining at exit failed; the rest waits for the next start")
    return handled


async def unread(runner: ConsumerRunner) -> bool:
    """True while a stream holds entries past what the runner's group has read."""
    for stream in runner.streams:
        last = (await runner.redis.xinfo_stream(stream))["last-generated-id"]
        groups = await runner.redis.xinfo_groups(stream)
        read = next((g["last-delivered-id"] for g in groups if g["name"] == runner.group), "0-0")
        if entry_key(str(read)) < entry_key(str(last)):
            return True
    return False


def create_app(settings: RetroSettings) -> FastAPI:
    """The retro app for ``settings`` (read once at start)."""
    app = FastAPI(
        title="streamloop-retro",
        version="0.1.0",
        lifespan=functools.partial(lifespan, settings=settings),
    )
    guard_hosts(app, settings)
    app.include_router(ops.router)
    return app
