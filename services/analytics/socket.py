"""``/ws/metrics``: the dashboard's live feed (``?channel=``, ``?token=``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from services.analytics import messages
from services.analytics.auth import MISSING_TOKEN, presented_token, token_ok
from services.analytics.hub import Client
from services.analytics.settings import AnalyticsSettings
from services.analytics.state import analytics_state

log = logging.getLogger("services.analytics.socket")
router = APIRouter()
POLICY_VIOLATION = 1008
# How long a dropped client's close frame may wait behind the backlog already in
# its socket; uvicorn writes it only once the client has read that backlog.
DROP_CLOSE_TIMEOUT_S = 30.0
MAX_REASON_BYTES = 123
FOREIGN_ORIGIN = "origin not allowed: open the dashboard from this server or add it to CORS_ORIGINS"


@router.websocket("/ws/metrics")
async def metrics_socket(websocket: WebSocket) -> None:
    """Snapshot on connect, then every broadcast and donation for the chosen channel."""
    state = analytics_state(websocket)
    settings = state.settings
    await websocket.accept()
    refusal = refuse_reason(websocket, settings)
    if refusal:
        await websocket.close(code=POLICY_VIOLATION, reason=refusal)
        return
    channel = chosen_channel(websocket, settings)
    hub = state.hub
    client = hub.add(channel)
    try:
        await send_snapshot(websocket, channel)
        await serve_client(websocket, client)
    finally:
        hub.remove(client)


def origin_allowed(websocket: WebSocket, settings: AnalyticsSettings) -> bool:
    """Whether the page that opened this socket may read it.

    Browsers always send ``Origin`` with a WebSocket, and do not apply CORS to it:
    without a token, any page the streamer visits could otherwise read the figures
    (cross-site WebSocket hijacking). The dashboard's own origin (the one this
    request's ``Host`` names) and the ``CORS_ORIGINS`` may; a client that sends no
    ``Origin`` is not a browser page and may too.
    """
    origin = websocket.headers.get("origin")
    if origin is None:
        return True
    try:
        parts = urlsplit(origin)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    named = f"{parts.scheme}://{parts.netloc}".lower()
    own = parts.netloc.lower() == websocket.headers.get("host", "").lower()
    return own or named in {allowed.rstrip("/").lower() for allowed in settings.cors_origins}


def close_reason(text: str) -> str:
    """``text`` cut to the 123 UTF-8 bytes a WebSocket close frame allows (whole characters)."""
    return text.encode()[:MAX_REASON_BYTES].decode(errors="ignore")


def chosen_channel(websocket: WebSocket, settings: AnalyticsSettings) -> str:
    """``?channel=``, lower-cased, or the first of ``CHANNELS``."""
    return (websocket.query_params.get("channel") or settings.channels[0]).lower()


def refuse_reason(websocket: WebSocket, settings: AnalyticsSettings) -> str:
    """Why this socket is refused (wrong token, foreign origin, unknown channel), or ``""``."""
    if not token_ok(settings, presented_token(websocket)):
        return close_reason(MISSING_TOKEN)
    if not settings.dashboard_token.get_secret_value() and not origin_allowed(websocket, settings):
        return close_reason(FOREIGN_ORIGIN)
    channel = chosen_channel(websocket, settings)
    if channel not in settings.channels:
        known = ",".join(settings.channels)
        return close_reason(f"unknown channel {channel[:40]!r}; this server has {known}")
    return ""


async def send_snapshot(websocket: WebSocket, channel: str) -> None:
    """``stream_state``, ``metrics_update``, ``activity_names``, today's revenue points for
    the chart, then the recent donations (oldest first), so a reload loses nothing.

    They are read under the hub's ``joining`` limit and sent after it, so a burst of
    new clients cannot exhaust the Redis pool and a slow one holds no slot.
    """
    state = analytics_state(websocket)
    hub, broadcaster = state.hub, state.broadcaster
    async with hub.joining:
        frames = await broadcaster.snapshot_frames(channel)
        frames.append(messages.encode(messages.activity_names(broadcaster.settings.activity_names)))
        frames += await broadcaster.revenue_history(channel)
        frames += await broadcaster.recent_donation_frames(channel)
    for frame in frames:
        await websocket.send_text(frame)


async def serve_client(websocket: WebSocket, client: Client) -> None:
    """Send queued frames until the client leaves or falls too far behind."""
    tasks = [
        asyncio.create_task(pump(websocket, client)),
        asyncio.create_task(wait_for_disconnect(websocket)),
        asyncio.create_task(client.overflowed.wait()),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if client.overflowed.is_set():
        await close_dropped(websocket, client)


async def close_dropped(websocket: WebSocket, client: Client) -> None:
    """Close a client dropped for falling behind with 1008 and a "too slow" reason.

    Its socket is full (that is why it fell behind), so the close frame can only
    follow the frames already written once the client reads them: waiting just a
    moment would give up before then and end the connection with no close frame
    at all (a reader that resumes sees 1006 and no reason). So the close may wait
    up to ``DROP_CLOSE_TIMEOUT_S``; the hub no longer holds the client meanwhile.
    """
    log.warning(
        "dropped a %s client that fell %d messages behind", client.channel, client.queue.maxsize
    )
    with contextlib.suppress(Exception):
        reason = close_reason(f"too slow: {client.queue.maxsize} messages queued; reconnect")
        await asyncio.wait_for(websocket.close(POLICY_VIOLATION, reason), DROP_CLOSE_TIMEOUT_S)


async def pump(websocket: WebSocket, client: Client) -> None:
    """Write the client's queued frames in order, yielding between two of them.

    Yielding when another frame waits lets every other client's pump write its
    copy of a frame before this one writes the next, so a donation reaches all
    clients before anyone gets the ``revenue_point`` that follows it. With the
    queue empty, waiting for the next frame yields anyway.
    """
    while True:
        await websocket.send_text(await client.next_frame())
        if not client.queue.empty():
            await asyncio.sleep(0)


async def wait_for_disconnect(websocket: WebSocket) -> None:
    """Return when the client goes away (anything it sends is ignored)."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
