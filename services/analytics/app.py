"""The analytics app: dashboard page, REST API, WebSocket; its lifespan runs the consumer."""

from __future__ import annotations

import contextlib
import functools
import logging
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
from shared.consumer import default_consumer_name
from shared.exposure import guard_hosts
from shared.lifespan import ServiceLifespan
from shared.partition_leases import PartitionLeaseKeeper
from shared.partitioned_consumer import PartitionedConsumer

log = logging.getLogger("services.analytics")
STATIC = Path(__file__).parent / "static"
STOP_TIMEOUT_S = 8.0


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI, settings: AnalyticsSettings) -> AsyncIterator[None]:
    """Own Redis, the lease keeper, the consumer, the broadcaster and the donation tail.

    The replicas share the partitions through leases (``shared.partition_leases``):
    the consumer and the figures round work only the partitions this one holds; a
    runner that starts on a partition claims its previous holder's pending entries
    at once. The workers stop first (the keeper gives its leases back), then the
    figures of the channels it held whose state moved since the last round are
    computed once more (so the last second is in Redis), then Redis closes
    (``shared.lifespan``).
    """
    async with ServiceLifespan("analytics", settings, log, stop_timeout_s=STOP_TIMEOUT_S) as life:
        redis, stop = life.redis, life.stop
        hub = Hub(settings.client_queue_messages)
        windows = Windows(settings.chat_window_s * 1000, settings.engagement_window_s * 1000)
        computer = MetricsComputer(redis, settings.keys, windows, ZoneInfo(settings.timezone))
        replica = settings.consumer_name or default_consumer_name()
        keeper = PartitionLeaseKeeper(
            redis, settings.keys, GROUP, replica, settings.analytics_lease_ttl_ms
        )
        broadcaster = Broadcaster(redis, settings, hub, computer, partitions=keeper.held)
        handler = MetricsHandler(
            settings.keys,
            settings.state_ttl_s,
            apply_script(redis),
            channels=settings.channels,
            dead_maxlen=settings.stream_maxlen_dead,
        )
        runner = PartitionedConsumer(
            redis,
            settings,
            GROUP,
            handler,
            partitions=keeper.held,
            claim_at_start=settings.analytics_claim_at_start,
        )
        keeper.on_change(runner.wake)
        set_state(app, AnalyticsState(redis, life.supervisor, settings, hub, broadcaster, keeper))
        life.start("leases", lambda: keeper.run(stop))
        life.start("consumer", lambda: runner.run(stop))
        life.start("broadcast", lambda: broadcaster.run_ticks(stop))
        life.start("donations", lambda: broadcaster.run_donations(stop))

        async def recompute() -> None:
            with contextlib.suppress(Exception):
                await broadcaster.figures.run(broadcaster.channels_of(keeper.held_at_stop))

        life.on_close(recompute)
        life.summary(
            lambda: (
                f"{runner.summary.handled} events handled, "
                f"{runner.summary.dead_lettered} dead-lettered, {runner.summary.claimed} claimed "
                f"from dead consumers, {runner.summary.reconnects} reconnects, "
                f"{keeper.taken} partition leases taken, {keeper.given_back} given back, "
                f"{hub.count()} clients connected at exit"
            )
        )
        log.info(
            "analytics up: channels %s, consumer %s", ",".join(settings.channels), runner.consumer
        )
        yield


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
