"""The analytics app: dashboard page, REST API, WebSocket; its lifespan runs the consumer."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from zoneinfo import ZoneInfo

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from services.analytics import api, overview, retros, socket
from services.analytics.auth import require_token
from services.analytics.broadcaster import Broadcaster
from services.analytics.handler import GROUP, MetricsHandler
from services.analytics.hub import Hub
from services.analytics.metrics import MetricsComputer, Windows
from services.analytics.settings import AnalyticsSettings
from services.analytics.state import AnalyticsState
from services.analytics.writes import apply_script
from shared import ops
from shared.app_state import set_state
from shared.assets import VENDOR_DIR
from shared.exposure import guard_hosts
from shared.partitioned_consumer import PartitionedConsumer
from shared.redis_client import connect_settings
from shared.tasks import Supervisor, finish_tasks

log = logging.getLogger("services.analytics")
STATIC = Path(__file__).parent / "static"
STOP_TIMEOUT_S = 8.0


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI, settings: AnalyticsSettings) -> AsyncIterator[None]:
    """Own Redis, the consumer, the broadcaster and the donation tail; stop them in order."""
    started = time.monotonic()
    redis = connect_settings(settings)
    hub = Hub(settings.client_queue_messages)
    windows = Windows(settings.chat_window_s * 1000, settings.engagement_window_s * 1000)
    computer = MetricsComputer(redis, settings.keys, windows, ZoneInfo(settings.timezone))
    broadcaster = Broadcaster(redis, settings, hub, computer)
    handler = MetricsHandler(
        settings.keys,
        settings.state_ttl_s,
        apply_script(redis),
        channels=settings.channels,
        dead_maxlen=settings.stream_maxlen_dead,
    )
    runner = PartitionedConsumer(redis, settings, GROUP, handler)
    stop = asyncio.Event()
    supervisor = Supervisor()
    set_state(app, AnalyticsState(redis, supervisor, settings, hub, broadcaster))
    tasks = [
        supervisor.start("consumer", lambda: runner.run(stop), stop),
        supervisor.start("broadcast", lambda: broadcaster.run_ticks(stop), stop),
        supervisor.start("donations", lambda: broadcaster.run_donations(stop), stop),
    ]
    log.info("analytics up: channels %s, consumer %s", ",".join(settings.channels), runner.consumer)
    try:
        yield
    finally:
        stop.set()
        await finish_tasks(tasks, STOP_TIMEOUT_S)
        with contextlib.suppress(Exception):
            for channel in settings.channels:
                await computer.recompute(channel)
        await redis.aclose()
        log.info(
            "analytics stopped after %.1f s: %d events handled, %d dead-lettered, %d claimed from "
            "dead consumers, %d reconnects, %d clients connected at exit; redis closed",
            time.monotonic() - started,
            runner.summary.handled,
            runner.summary.dead_lettered,
            runner.summary.claimed,
            runner.summary.reconnects,
            hub.count(),
        )


def create_app(settings: AnalyticsSettings) -> FastAPI:
    """The analytics app for ``settings`` (read once at start)."""
    app = FastAPI(
        title="streamloop-analytics",
        version="0.1.0",
        lifespan=functools.partial(lifespan, settings=settings),
    )
    guard_hosts(app, settings)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET"],
            allow_headers=["Authorization"],
        )
    app.include_router(ops.router)
    app.include_router(overview.router)
    app.include_router(api.router)
    app.include_router(retros.router)
    app.include_router(socket.router)
    app.mount("/static/vendor", StaticFiles(directory=VENDOR_DIR), name="vendor")
    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")

    @app.get("/", include_in_schema=False, dependencies=[Depends(require_token)])
    async def dashboard() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return app
