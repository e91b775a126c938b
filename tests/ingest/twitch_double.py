"""A local stand-in for Twitch on 127.0.0.1: OAuth, Helix and the EventSub WebSocket.

It speaks the documented wire formats (dev.twitch.tv/docs: "Authentication", the Helix
reference, "EventSub WebSocket messages") closely enough for a real client to run
against it, and records what clients did so tests can assert on it: every
subscription request, the sessions and the connections behind them.

Tests drive it with :meth:`TwitchDouble.notify` (deliver a notification on the
session subscribed to that type), :meth:`~TwitchDouble.reconnect` (send
``session_reconnect`` pointing at the double's second WebSocket endpoint),
:meth:`~TwitchDouble.drop` (abort the TCP connection without a close frame),
:meth:`~TwitchDouble.silence` (stop keepalives) and :meth:`~TwitchDouble.set_live`.

Its parts: :mod:`tests.ingest.twitch_state` (identities and recorded state),
:mod:`tests.ingest.twitch_helix` (OAuth and Helix) and :mod:`tests.ingest.twitch_eventsub`
(the WebSocket). Documented example payloads for the mapping and webhook tests are in
:mod:`tests.ingest.twitch_payloads`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from aiohttp import web

from tests.ingest.twitch_eventsub import EventSubSockets
from tests.ingest.twitch_helix import HelixEndpoints
from tests.ingest.twitch_state import (
    BROADCASTER_ID,
    BROADCASTER_LOGIN,
    Session,
    rfc3339,
)


class TwitchDouble(HelixEndpoints, EventSubSockets):
    """Twitch's OAuth, Helix and EventSub WebSocket endpoints on a free 127.0.0.1 port."""

    @classmethod
    @asynccontextmanager
    async def running(cls, **options: Any) -> AsyncIterator[TwitchDouble]:
        """Start a double, yield it, and shut it down with every connection closed."""
        double = cls(**options)
        await double.start()
        try:
            yield double
        finally:
            await double.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def auth_url(self) -> str:
        """Stand-in for ``https://id.twitch.tv/oauth2``."""
        return f"{self.base_url}/oauth2"

    @property
    def api_url(self) -> str:
        """Stand-in for ``https://api.twitch.tv/helix``."""
        return f"{self.base_url}/helix"

    @property
    def ws_url(self) -> str:
        """Stand-in for ``wss://eventsub.wss.twitch.tv/ws``."""
        return f"ws://127.0.0.1:{self._port}/ws"

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application()
        app.add_routes(
            [
                web.post("/oauth2/token", self._token),
                web.get("/oauth2/validate", self._validate),
                web.get("/helix/users", self._users),
                web.post("/helix/eventsub/subscriptions", self._create_subscription),
                web.get("/helix/eventsub/subscriptions", self._list_subscriptions),
                web.delete("/helix/eventsub/subscriptions", self._delete_subscription),
                web.get("/helix/streams", self._streams),
                web.post("/helix/chat/messages", self._send_chat_message),
                web.get("/ws", self._fresh_socket),
                web.get("/ws/reconnect", self._reconnect_socket),
            ]
        )
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Close every open WebSocket (going away), stop background tasks and the server."""
        for session in self.sessions.values():
            for connection in session.connections:
                if not connection.closed_by:
                    connection.closed_by = "double"
                    await connection.socket.close(code=1001, message=b"double shutting down")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---- test controls -------------------------------------------------------------

    def set_live(self, stream_id: str, viewers: int, started_at: datetime | None = None) -> None:
        """Make Helix ``/streams`` report the broadcaster live."""
        self.stream = {
            "id": stream_id,
            "user_id": BROADCASTER_ID,
            "user_login": BROADCASTER_LOGIN,
            "user_name": BROADCASTER_LOGIN.title(),
            "game_id": "509658",
            "game_name": "Just Chatting",
            "type": "live",
            "title": "An AI runs this stream",
            "tags": ["English"],
            "viewer_count": viewers,
            "started_at": rfc3339(started_at).split(".")[0] + "Z",
            "language": "en",
            "thumbnail_url": "https://static-cdn.jtvnw.net/previews-ttv/live_user-{width}x{height}.jpg",
            "tag_ids": [],
            "is_mature": False,
        }

    def set_offline(self) -> None:
        """Make Helix ``/streams`` report no live stream."""
        self.stream = None

    async def wait_for_subscribed_session(
        self, count: int, *, other_than: str | None = None, timeout_s: float = 5.0
    ) -> Session:
        """A connected session holding ``count`` enabled subscriptions (not ``other_than``)."""

        def ready() -> Session | None:
            for session in self.sessions.values():
                subscribed = len(self.enabled_subscriptions(session.id)) == count
                if session.current and subscribed and session.id != other_than:
                    return session
            return None

        found: Session = await self.wait_until(ready, timeout_s)
        return found
