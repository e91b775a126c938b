"""Post-stream reports written by the retro worker: the list and the HTML page.

The retro worker stores each report in ``retro:{channel}:{stream_id}`` (a hash whose
``html`` field is the self-contained page) and indexes it in ``retros:{channel}``
(stream id by end time); this module only reads them.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from services.analytics.api import ChannelName, known_channel
from services.analytics.auth import require_token
from services.analytics.state import analytics_state
from shared.clock import format_ms

router = APIRouter(tags=["retros"], dependencies=[Depends(require_token)])


class RetroLink(BaseModel):
    """One stored post-stream report."""

    stream_id: str
    ended: str = Field(description="When the stream ended, RFC 3339 UTC")
    url: str = Field(description="The report's HTML page on this server")


def retro_url(channel: str, stream_id: str) -> str:
    """Path of a report's page (the stream id percent-encoded)."""
    return f"/retros/{channel}/{quote(stream_id, safe='')}"


@router.get("/api/channels/{channel}/retros", summary="Post-stream reports, newest first")
async def retros(
    request: Request,
    channel: ChannelName,
    limit: Annotated[int, Query(ge=1, le=500, description="How many, newest first")] = 50,
) -> list[RetroLink]:
    """Every report the retro worker stored for the channel (empty before the first)."""
    state = analytics_state(request)
    name = known_channel(request, channel)
    entries: list[tuple[str, float]] = await state.redis.zrevrange(  # type: ignore[assignment]
        state.settings.keys.retro_index(name), 0, limit - 1, withscores=True
    )
    return [
        RetroLink(stream_id=stream_id, ended=format_ms(int(ended)), url=retro_url(name, stream_id))
        for stream_id, ended in entries
    ]


@router.get(
    "/retros/{channel}/{stream_id:path}",
    summary="A post-stream report as an HTML page",
    response_class=HTMLResponse,
    responses={404: {"description": "No report for this stream (yet)"}},
)
async def retro_page(
    request: Request,
    channel: ChannelName,
    stream_id: Annotated[str, Path(description="The stream", min_length=1, max_length=128)],
) -> HTMLResponse:
    """The self-contained page (charts included) the retro worker built."""
    state = analytics_state(request)
    name = known_channel(request, channel)
    html = await state.redis.hget(state.settings.keys.retro(name, stream_id), "html")
    if html is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"no retro for stream {stream_id!r} of channel {name!r} (yet): the retro worker "
            "writes one when the stream ends",
        )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})
