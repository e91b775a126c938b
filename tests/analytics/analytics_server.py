"""The real analytics app on a real port, inside the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn
from fastapi import FastAPI

from services.analytics.app import create_app
from services.analytics.settings import AnalyticsSettings
from shared.redis_server import free_port


@contextlib.asynccontextmanager
async def analytics_server(settings: AnalyticsSettings) -> AsyncIterator[tuple[str, FastAPI]]:
    """Yield (``http://127.0.0.1:<port>``, app) while uvicorn serves the app; stop it after."""
    port = free_port()
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=15)
