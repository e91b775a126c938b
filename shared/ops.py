"""``/healthz`` and ``/metrics``, the same on every service's HTTP port.

The app's lifespan puts its Redis client on ``app.state.redis``; health is
"this process answers and Redis answers PING".
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.redis_client import CONNECTION_ERRORS

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Process up and Redis reachable")
async def healthz(request: Request) -> JSONResponse:
    """200 with ``{"status": "ok"}`` when Redis answers PING, else 503 saying why."""
    body: dict[str, Any] = {"service": request.app.title}
    try:
        await request.app.state.redis.ping()
    except CONNECTION_ERRORS as error:
        body |= {"status": "degraded", "redis": f"unreachable: {error}"}
        return JSONResponse(body, status_code=503)
    return JSONResponse(body | {"status": "ok", "redis": "ok"})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    """Every metric of this process in the Prometheus text format."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
