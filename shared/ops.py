"""``/healthz`` and ``/metrics``, the same on every service's HTTP port.

The app's lifespan sets its typed state (:mod:`shared.app_state`: its Redis client
and its :class:`shared.tasks.Supervisor`); health is "this process answers, Redis
answers PING and no worker task is down" (a dead or restarting worker is named
with its error, so the 503 says what to fix).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.app_state import ServiceState, state_of
from shared.redis_client import CONNECTION_ERRORS

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Process up, Redis reachable, every worker task running")
async def healthz(request: Request) -> JSONResponse:
    """200 with ``{"status": "ok"}`` when Redis answers PING and no worker is down,
    else 503 saying why (``redis``: the error; ``down``: each worker task and its error).
    The service may add what it works on (analytics: the partitions it holds)."""
    state = state_of(request.app, ServiceState)
    body: dict[str, Any] = {"service": request.app.title} | state.health()
    healthy = True
    try:
        await state.redis.ping()
        body["redis"] = "ok"
    except CONNECTION_ERRORS as error:
        body["redis"] = f"unreachable: {error}"
        healthy = False
    down = state.supervisor.down()
    if down:
        body["down"] = down
        healthy = False
    if not healthy:
        return JSONResponse(body | {"status": "degraded"}, status_code=503)
    return JSONResponse(body | {"status": "ok"})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    """Every metric of this process in the Prometheus text format."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
