"""The Twitch double's EventSub WebSocket (dev.twitch.tv/docs: "EventSub WebSocket
messages") and the test controls that act on it: notify, send, reconnect, drop, silence.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping
from contextlib import suppress
from typing import Any

from aiohttp import WSMsgType, web

from tests.ingest.twitch_state import (
    Connection,
    Session,
    TwitchState,
    _http_error,
    rfc3339,
)


class EventSubSockets(TwitchState):
    """The EventSub WebSocket: sessions, welcome, keepalives, notifications, reconnects."""

    async def notify(
        self, subscription_type: str, event: Mapping[str, Any], *, message_id: str | None = None
    ) -> str:
        """Deliver a notification on the connected session subscribed to that type.

        Returns the message id. Raises ``LookupError`` when no connected session holds
        an enabled subscription of the type: the client lost it.
        """
        sub = next(
            (
                sub
                for sub in self.enabled_subscriptions()
                if sub.type == subscription_type and self.sessions[sub.session_id].current
            ),
            None,
        )
        if sub is None:
            raise LookupError(f"no enabled {subscription_type} subscription on an open session")
        message_id = message_id or str(uuid.uuid4())
        message = {
            "metadata": self._metadata("notification", message_id)
            | {"subscription_type": sub.type, "subscription_version": sub.version},
            "payload": {"subscription": sub.as_json(), "event": dict(event)},
        }
        await self.send(sub.session_id, message)
        return message_id

    async def send(self, session_id: str, message: Mapping[str, Any] | str) -> None:
        """Send a raw message (a JSON object, or any text) on a session's open connection."""
        connection = self.sessions[session_id].current
        assert connection is not None, f"session {session_id} has no open connection"
        text = message if isinstance(message, str) else json.dumps(message)
        await connection.socket.send_str(text)

    async def reconnect(self, session_id: str) -> None:
        """Send ``session_reconnect`` with a ``reconnect_url`` on the second endpoint.

        Like Twitch, the double closes the old connection with 4004 if the client has
        not closed it within the grace time.
        """
        connection = self.sessions[session_id].current
        assert connection is not None
        url = f"ws://127.0.0.1:{self._port}/ws/reconnect?session={session_id}"
        session = {
            "id": session_id,
            "status": "reconnecting",
            "keepalive_timeout_seconds": None,
            "reconnect_url": url,
            "connected_at": rfc3339(),
        }
        message = {"metadata": self._metadata("session_reconnect"), "payload": {"session": session}}
        await connection.socket.send_str(json.dumps(message))
        self._spawn(self._expire_after_grace(connection))

    async def drop(self, session_id: str) -> None:
        """Abort a session's TCP connection without a close frame (a network failure)."""
        connection = self.sessions[session_id].current
        assert connection is not None and connection.request.transport is not None
        connection.closed_by = "double"
        connection.request.transport.abort()
        for sub in self.enabled_subscriptions(session_id):
            sub.status = "websocket_disconnected"
        await self._changed_now()

    def silence(self, session_id: str) -> None:
        """Stop sending keepalives on a session, as a stalled connection would."""
        self.sessions[session_id].silent = True

    # ---- OAuth -------------------------------------------------------------------

    async def _fresh_socket(self, request: web.Request) -> web.WebSocketResponse:
        session = Session(id=f"session{next(self._counter):06d}")
        self.sessions[session.id] = session
        return await self._serve(request, session, "/ws")

    async def _reconnect_socket(self, request: web.Request) -> web.WebSocketResponse:
        session = self.sessions.get(request.query.get("session", ""))
        if session is None:
            raise _http_error(400, "unknown reconnect session")
        return await self._serve(request, session, "/ws/reconnect")

    async def _serve(
        self, request: web.Request, session: Session, endpoint: str
    ) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        connection = Connection(endpoint, socket, request)
        session.connections.append(connection)
        await socket.send_str(json.dumps(self._welcome(session)))
        await self._changed_now()
        keepalive = asyncio.create_task(self._keep_alive(session, connection))
        try:
            await self._read_until_closed(connection)
        finally:
            keepalive.cancel()
            await self._closed(session, connection)
        return socket

    async def _read_until_closed(self, connection: Connection) -> None:
        async for message in connection.socket:
            if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                # Twitch allows no inbound messages: it closes with 4001.
                connection.closed_by = "double"
                await connection.socket.close(code=4001, message=b"client sent inbound traffic")

    async def _closed(self, session: Session, connection: Connection) -> None:
        if not connection.closed_by:
            connection.closed_by = "client"
        if session.connections[-1] is connection:
            for sub in self.enabled_subscriptions(session.id):
                sub.status = "websocket_disconnected"
        await self._changed_now()

    async def _keep_alive(self, session: Session, connection: Connection) -> None:
        with suppress(ConnectionError, RuntimeError):
            while not connection.closed_by:
                await asyncio.sleep(self.keepalive_timeout_s / 2)
                if not session.silent and not connection.closed_by:
                    message = {"metadata": self._metadata("session_keepalive"), "payload": {}}
                    await connection.socket.send_str(json.dumps(message))

    async def _expire_after_grace(self, old: Connection) -> None:
        await asyncio.sleep(self.reconnect_grace_s)
        if not old.closed_by:
            old.closed_by = "double"
            await old.socket.close(code=4004, message=b"reconnect grace time expired")

    def _welcome(self, session: Session) -> dict[str, Any]:
        details = {
            "id": session.id,
            "status": "connected",
            "keepalive_timeout_seconds": self.keepalive_timeout_s,
            "reconnect_url": None,
            "connected_at": rfc3339(),
        }
        return {"metadata": self._metadata("session_welcome"), "payload": {"session": details}}

    def _metadata(self, message_type: str, message_id: str | None = None) -> dict[str, str]:
        return {
            "message_id": message_id or str(uuid.uuid4()),
            "message_type": message_type,
            "message_timestamp": rfc3339(),
        }
