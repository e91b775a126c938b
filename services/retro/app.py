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
from shared.lifespan import ServiceLifespan
from shared.partitioned_consumer import PartitionedConsumer
from shared.redis_client import CONNECTION_ERRORS

log = logging.getLogger("services.retro")
STOP_TIMEOUT_S = 6.0
DRAIN_BUDGET_S = 3.0


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI, settings: RetroSettings) -> AsyncIterator[None]:
    """Own Redis and the consumer; on stop finish the batch, drain, log one summary line."""
    async with ServiceLifespan("retro", settings, log, stop_timeout_s=STOP_TIMEOUT_S) as life:
        redis, stop = life.redis, life.stop
        handler = RetroHandler(redis, settings, stop=stop)
        runner = PartitionedConsumer(redis, settings, GROUP, handler, streams=[Stream.LIFECYCLE])
        set_state(app, RetroState(redis, life.supervisor, settings, handler))
        life.start("consumer", lambda: runner.run(stop))
        drained = 0

        async def drain_at_exit() -> None:
            """Drain what is left, unless the consumer did not stop cleanly."""
            nonlocal drained
            if life.outcomes.get("consumer") == "stopped":
                drained = await drain(runner)

        life.on_close(drain_at_exit)
        life.summary(
            lambda: (
                f"{runner.summary.handled} lifecycle entries handled ({drained} drained at "
                f"exit), {runner.summary.dead_lettered} dead-lettered, {len(handler.reports)} "
                f"report(s) written{recent(handler.reports)}, {handler.scored} segment(s) scored "
                "at stream end"
            )
        )
        log.info("retro up: consumer %s, reports in %s", runner.consumer, settings.retro_dir)
        yield


def recent(reports: list[str]) -> str:
    """`` (the last five report paths)`` for the summary line, or nothing when none."""
    return f" ({', '.join(reports[-5:])})" if reports else ""


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
