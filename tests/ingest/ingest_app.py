"""Run the real ingest app (lifespan included) in-process for HTTP tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings


@contextlib.asynccontextmanager
async def ingest_client(settings: IngestSettings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client wired to the ingest app, with its lifespan entered and left."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            yield client
