"""Every channel at a glance: the paginated channel list and the overview page.

``GET /api/channels`` answers one page of ``CHANNELS`` (``offset``, ``limit``) with
each channel's headline figures and health, read in one pipelined round trip
(one ``HMGET`` of ``metrics:{channel}`` and one ``GET`` of its orchestrator lease
per channel), so its cost follows the page size, not the number of channels.
The total is in ``X-Total-Count`` and the next page in a ``Link: <...>; rel="next"``
header (RFC 8288), so the body stays the plain list it has always been.

``GET /channels`` is the overview page that renders it (``static/overview.html``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from services.analytics.auth import require_token
from services.analytics.state import analytics_state
from shared.keys import Keys

STATIC = Path(__file__).parent / "static"
MAX_PAGE = 1000
HEADLINE_FIELDS = (
    "is_live",
    "current_activity",
    "viewer_count",
    "revenue_stream",
    "engagement_score",
    "now",
)
Health = Literal["ok", "offline", "no orchestrator"]

router = APIRouter(dependencies=[Depends(require_token)])


class ChannelInfo(BaseModel):
    """A channel this server serves, with its headline figures and health."""

    channel: str
    is_live: bool
    current_activity: str
    viewer_count: int = 0
    revenue_stream: float = Field(0.0, description="USD this stream")
    engagement_score: float = Field(0.0, ge=0, le=100)
    now: str = Field("", description="the channel's event time: latest ts seen")
    orchestrator: str = Field("", description="the orchestrator replica deciding it, if any")
    health: Health = Field(
        description="offline (not live), no orchestrator (live, but no replica holds its lease), ok"
    )


@router.get("/api/channels", summary="Channels served, one page at a time", tags=["api"])
async def channels(
    request: Request,
    response: Response,
    offset: Annotated[int, Query(ge=0, description="First channel of the page")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Channels per page")] = 100,
) -> list[ChannelInfo]:
    """A page of ``CHANNELS`` in their configured order, with figures and health."""
    every: list[str] = analytics_state(request).settings.channels
    page = every[offset : offset + limit]
    response.headers["X-Total-Count"] = str(len(every))
    if offset + limit < len(every):
        following = request.url.include_query_params(offset=offset + limit, limit=limit)
        response.headers["Link"] = f'<{following}>; rel="next"'
    state = analytics_state(request)
    return await read_page(state.redis, state.settings.keys, page)


async def read_page(redis: Any, keys: Keys, page: list[str]) -> list[ChannelInfo]:
    """Headline figures and lease holder of each channel of ``page``, in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        for channel in page:
            pipe.hmget(keys.metrics(channel), HEADLINE_FIELDS)
            pipe.get(keys.orchestrator_lease(channel))
        replies = await pipe.execute()
    return [
        channel_info(channel, figures, holder)
        for channel, figures, holder in zip(page, replies[::2], replies[1::2], strict=True)
    ]


def channel_info(channel: str, figures: list[str | None], holder: str | None) -> ChannelInfo:
    """One row: the figures as analytics wrote them (zeros before any event)."""
    values = dict(zip(HEADLINE_FIELDS, figures, strict=True))
    is_live = values["is_live"] == "1"
    health: Health = "offline" if not is_live else ("ok" if holder else "no orchestrator")
    return ChannelInfo(
        channel=channel,
        is_live=is_live,
        current_activity=values["current_activity"] or "",
        viewer_count=int(values["viewer_count"] or 0),
        revenue_stream=float(values["revenue_stream"] or 0),
        engagement_score=float(values["engagement_score"] or 0),
        now=values["now"] or "",
        orchestrator=holder or "",
        health=health,
    )


@router.get("/channels", include_in_schema=False)
async def overview_page() -> FileResponse:
    """The overview page: every channel, paginated, refreshed every few seconds."""
    return FileResponse(STATIC / "overview.html")
