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

The module also builds documented example payloads (:func:`example_event`,
:func:`webhook_body`, :func:`webhook_headers`) for the mapping and webhook tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

CLIENT_ID = "doubleclientid0000000000000000"
CLIENT_SECRET = "doubleclientsecret000000000000"
BROADCASTER_ID = "1001"
BROADCASTER_LOGIN = "loopchannel"
BOT_ID = "2002"
BOT_LOGIN = "loopbot"
USER_TOKEN = "usertoken00000000000000000000"
REFRESH_TOKEN = "refreshtoken000000000000000000"
CHAT_WRITE_SCOPE = "user:write:chat"
CHAT_MAX_CHARS = 500
CHAT_LIMIT = 20
CHAT_WINDOW_S = 30.0
"""Send Chat Message: 500 characters; 20 messages per 30 s for a sender who is not a mod."""
BOT_TOKEN = "bottoken000000000000000000000"
BOT_REFRESH_TOKEN = "botrefresh00000000000000000000"
BOT_SCOPES = ["user:read:chat", CHAT_WRITE_SCOPE]
"""A user token (and its refresh token) of the bot account, to read and send chat."""
USER_TOKEN_SCOPES = [
    "user:read:chat",
    "channel:read:subscriptions",
    "bits:read",
    "moderator:read:followers",
]

CONDITION_KEYS: dict[tuple[str, str], frozenset[str]] = {
    ("channel.chat.message", "1"): frozenset({"broadcaster_user_id", "user_id"}),
    ("channel.subscribe", "1"): frozenset({"broadcaster_user_id"}),
    ("channel.subscription.message", "1"): frozenset({"broadcaster_user_id"}),
    ("channel.subscription.gift", "1"): frozenset({"broadcaster_user_id"}),
    ("channel.cheer", "1"): frozenset({"broadcaster_user_id"}),
    ("channel.raid", "1"): frozenset({"to_broadcaster_user_id"}),
    ("channel.follow", "2"): frozenset({"broadcaster_user_id", "moderator_user_id"}),
    ("stream.online", "1"): frozenset({"broadcaster_user_id"}),
    ("stream.offline", "1"): frozenset({"broadcaster_user_id"}),
}
"""Subscription types the double accepts, with the condition fields each requires."""


def rfc3339(moment: datetime | None = None) -> str:
    """``moment`` (default now) the way Twitch writes times: UTC, ``Z``, sub-second digits."""
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class TokenInfo:
    """What ``/oauth2/validate`` says about a token."""

    client_id: str
    user_id: str | None
    login: str | None
    scopes: list[str]
    expires_in: int


@dataclass
class Subscription:
    """One EventSub subscription as Helix stores it."""

    id: str
    type: str
    version: str
    condition: dict[str, str]
    session_id: str
    status: str = "enabled"
    created_at: str = field(default_factory=rfc3339)

    def as_json(self) -> dict[str, Any]:
        """The subscription object of Helix responses and notification payloads."""
        return {
            "id": self.id,
            "status": self.status,
            "type": self.type,
            "version": self.version,
            "condition": self.condition,
            "created_at": self.created_at,
            "transport": {"method": "websocket", "session_id": self.session_id},
            "cost": 0,
        }


@dataclass
class Connection:
    """One WebSocket connection to the double."""

    endpoint: str
    socket: web.WebSocketResponse
    request: web.Request
    closed_by: str = ""
    """``client`` (close frame or EOF from the client) or ``double``; empty while open."""


@dataclass
class Session:
    """An EventSub WebSocket session; a ``session_reconnect`` moves it to a new connection."""

    id: str
    connections: list[Connection] = field(default_factory=list)
    silent: bool = False

    @property
    def current(self) -> Connection | None:
        """The connection events go to, if still open."""
        last = self.connections[-1] if self.connections else None
        return last if last is not None and not last.closed_by else None


class TwitchDouble:
    """Twitch's OAuth, Helix and EventSub WebSocket endpoints on a free 127.0.0.1 port."""

    def __init__(self, *, keepalive_timeout_s: int = 10, reconnect_grace_s: float = 5.0) -> None:
        self.keepalive_timeout_s = keepalive_timeout_s
        self.reconnect_grace_s = reconnect_grace_s
        self.users = {BROADCASTER_ID: BROADCASTER_LOGIN, BOT_ID: BOT_LOGIN}
        self.tokens: dict[str, TokenInfo] = {}
        self.refresh_tokens: dict[str, str] = {REFRESH_TOKEN: BROADCASTER_ID}
        self.subscriptions: dict[str, Subscription] = {}
        self.subscription_requests: list[dict[str, Any]] = []
        self.sessions: dict[str, Session] = {}
        self.stream: dict[str, Any] | None = None
        self.streams_requests = 0
        self.refreshes = 0
        self.chat_messages: list[dict[str, Any]] = []
        """Send Chat Message bodies Twitch accepted and delivered (``is_sent`` true)."""
        self.chat_sent_at: list[float] = []
        self.chat_drop_next: dict[str, str] | None = None
        """Set to ``{"code", "message"}`` to drop the next message (200, ``is_sent`` false)."""
        self.chat_banned: set[str] = set()
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()
        self._counter = itertools.count(1)
        self.add_user_token(USER_TOKEN, BROADCASTER_ID)
        self.add_user_token(BOT_TOKEN, BOT_ID, scopes=BOT_SCOPES)
        self.refresh_tokens[BOT_REFRESH_TOKEN] = BOT_ID

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

    def add_user_token(
        self,
        token: str,
        user_id: str,
        *,
        expires_in: int = 14_400,
        scopes: Sequence[str] = USER_TOKEN_SCOPES,
    ) -> None:
        """Make ``token`` a valid user access token of ``user_id`` with ``scopes``."""
        self.tokens[token] = TokenInfo(
            CLIENT_ID, user_id, self.users[user_id], list(scopes), expires_in
        )

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

    def enabled_subscriptions(self, session_id: str | None = None) -> list[Subscription]:
        """Subscriptions still delivering, optionally only those of one session."""
        return [
            sub
            for sub in self.subscriptions.values()
            if sub.status == "enabled" and session_id in (None, sub.session_id)
        ]

    def live_session(self) -> Session | None:
        """The session with an open connection and at least one enabled subscription."""
        for session in self.sessions.values():
            if session.current is not None and self.enabled_subscriptions(session.id):
                return session
        return None

    async def wait_until(self, check: Callable[[], Any], timeout_s: float = 5.0) -> Any:
        """Wait until ``check()`` is truthy (re-checked whenever the double changes); return it."""
        async with asyncio.timeout(timeout_s), self._changed:
            while not (result := check()):
                await self._changed.wait()
            return result

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

    async def _token(self, request: web.Request) -> web.Response:
        params = dict(request.query) | dict(await request.post())
        if params.get("client_id") != CLIENT_ID or params.get("client_secret") != CLIENT_SECRET:
            return _error(403, "invalid client secret")
        grant = params.get("grant_type")
        if grant == "client_credentials":
            token = f"apptoken{next(self._counter):022d}"
            self.tokens[token] = TokenInfo(CLIENT_ID, None, None, [], 5_000_000)
            return web.json_response(
                {"access_token": token, "expires_in": 5_000_000, "token_type": "bearer"}
            )
        if grant == "refresh_token" and params.get("refresh_token") in self.refresh_tokens:
            return self._refreshed(self.refresh_tokens[str(params["refresh_token"])])
        return _error(400, "Invalid refresh token" if grant == "refresh_token" else "bad grant")

    def _refreshed(self, user_id: str) -> web.Response:
        self.refreshes += 1
        token = f"usertoken{next(self._counter):021d}"
        scopes = BOT_SCOPES if user_id == BOT_ID else USER_TOKEN_SCOPES
        self.add_user_token(token, user_id, scopes=scopes)
        body = {
            "access_token": token,
            "refresh_token": BOT_REFRESH_TOKEN if user_id == BOT_ID else REFRESH_TOKEN,
            "expires_in": 14_400,
            "scope": scopes,
            "token_type": "bearer",
        }
        return web.json_response(body)

    async def _validate(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        info = self.tokens.get(header.removeprefix("OAuth ").removeprefix("Bearer "))
        if info is None:
            return _error(401, "invalid access token")
        body: dict[str, Any] = {
            "client_id": info.client_id,
            "scopes": info.scopes,
            "expires_in": info.expires_in,
        }
        if info.user_id:
            body |= {"login": info.login, "user_id": info.user_id}
        return web.json_response(body)

    def _caller(self, request: web.Request) -> TokenInfo:
        header = request.headers.get("Authorization", "")
        info = (
            self.tokens.get(header.removeprefix("Bearer "))
            if header.startswith("Bearer ")
            else None
        )
        if info is None:
            raise _http_error(401, "Invalid OAuth token")
        if request.headers.get("Client-Id") != info.client_id:
            raise _http_error(401, "Client ID and OAuth token do not match")
        return info

    # ---- Helix -------------------------------------------------------------------

    async def _users(self, request: web.Request) -> web.Response:
        caller = self._caller(request)
        ids = request.query.getall("id", [])
        logins = request.query.getall("login", [])
        if not ids and not logins and caller.user_id:
            ids = [caller.user_id]
        found = [
            _user(user_id, login)
            for user_id, login in self.users.items()
            if user_id in ids or login in logins
        ]
        return web.json_response({"data": found})

    async def _create_subscription(self, request: web.Request) -> web.Response:
        caller = self._caller(request)
        body = await request.json()
        self.subscription_requests.append({"body": body, "user_id": caller.user_id})
        problem = self._subscription_problem(body, caller)
        if problem is not None:
            return problem
        sub = Subscription(
            id=str(uuid.uuid4()),
            type=body["type"],
            version=body["version"],
            condition=dict(body["condition"]),
            session_id=body["transport"]["session_id"],
        )
        self.subscriptions[sub.id] = sub
        await self._changed_now()
        payload = {"data": [sub.as_json()], "total": 1, "total_cost": 0, "max_total_cost": 10}
        return web.json_response(payload, status=202)

    def _subscription_problem(self, body: Any, caller: TokenInfo) -> web.Response | None:
        key = (body.get("type"), body.get("version"))
        transport = body.get("transport") or {}
        if key not in CONDITION_KEYS:
            return _error(400, f"unsupported subscription type and version {key}")
        if set(body.get("condition") or {}) != CONDITION_KEYS[key]:
            return _error(400, f"condition must have exactly {sorted(CONDITION_KEYS[key])}")
        if transport.get("method") != "websocket" or caller.user_id is None:
            return _error(400, "websocket transport needs a user access token")
        session = self.sessions.get(transport.get("session_id", ""))
        if session is None or session.current is None:
            return _error(400, "websocket transport session does not exist or has disconnected")
        if any(
            sub.type == body["type"] and sub.condition == body["condition"]
            for sub in self.enabled_subscriptions(session.id)
        ):
            return _error(409, "subscription already exists")
        return None

    async def _list_subscriptions(self, request: web.Request) -> web.Response:
        self._caller(request)
        data = [sub.as_json() for sub in self.subscriptions.values()]
        body = {"data": data, "total": len(data), "total_cost": 0, "max_total_cost": 10}
        return web.json_response(body | {"pagination": {}})

    async def _delete_subscription(self, request: web.Request) -> web.Response:
        self._caller(request)
        if self.subscriptions.pop(request.query.get("id", ""), None) is None:
            return _error(404, "subscription not found")
        return web.Response(status=204)

    async def _streams(self, request: web.Request) -> web.Response:
        self._caller(request)
        self.streams_requests += 1
        wanted = request.query.getall("user_id", [])
        live = self.stream is not None and (not wanted or self.stream["user_id"] in wanted)
        data = [self.stream] if live else []
        await self._changed_now()
        return web.json_response({"data": data, "pagination": {}})

    # ---- EventSub WebSocket ----------------------------------------------------------

    async def _send_chat_message(self, request: web.Request) -> web.Response:
        """Helix Send Chat Message, per Twitch's API reference.

        401 for a bad token, a missing ``user:write:chat`` scope, or a ``sender_id``
        that is not the token's user; 400 for a missing field; 422 over 500
        characters; 403 for a sender banned from the chat; 429 (with the
        ``Ratelimit-*`` headers) beyond 20 messages per 30 s; 200 with ``is_sent``
        false and a ``drop_reason`` when chat drops it (see ``chat_drop_next``).
        """
        caller = self._caller(request)
        if CHAT_WRITE_SCOPE not in caller.scopes:
            return _error(401, f"Missing scope: {CHAT_WRITE_SCOPE}")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "The request body is not valid JSON")
        missing = [
            name
            for name in ("broadcaster_id", "sender_id", "message")
            if not isinstance(body, dict) or not body.get(name)
        ]
        if missing:
            return _error(400, f"Missing required parameter: {missing[0]}")
        if body["sender_id"] != caller.user_id:
            return _error(401, "The sender_id must match the user ID in the access token")
        if len(str(body["message"])) > CHAT_MAX_CHARS:
            return _error(422, "The message is too large")
        if body["sender_id"] in self.chat_banned:
            return _error(403, "The sender is not permitted to send chat messages")
        now = time.time()
        recent = [at for at in self.chat_sent_at if at > now - CHAT_WINDOW_S]
        if len(recent) >= CHAT_LIMIT:
            reset = int(recent[0] + CHAT_WINDOW_S) + 1
            headers = {
                "Ratelimit-Limit": str(CHAT_LIMIT),
                "Ratelimit-Remaining": "0",
                "Ratelimit-Reset": str(reset),
            }
            response = _error(429, "Too Many Requests")
            response.headers.update(headers)
            return response
        self.chat_sent_at = [*recent, now]
        if self.chat_drop_next is not None:
            drop, self.chat_drop_next = self.chat_drop_next, None
            result = {"message_id": "", "is_sent": False, "drop_reason": drop}
        else:
            self.chat_messages.append(dict(body))
            result = {"message_id": str(uuid.uuid4()), "is_sent": True, "drop_reason": None}
        return web.json_response({"data": [result]})

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

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _changed_now(self) -> None:
        async with self._changed:
            self._changed.notify_all()


def _user(user_id: str, login: str) -> dict[str, Any]:
    return {
        "id": user_id,
        "login": login,
        "display_name": login.title(),
        "type": "",
        "broadcaster_type": "affiliate",
        "description": "",
        "profile_image_url": "https://static-cdn.jtvnw.net/user-default-pictures/1.png",
        "offline_image_url": "",
        "view_count": 0,
        "created_at": "2016-12-14T20:32:28Z",
    }


def _error(status: int, message: str) -> web.Response:
    reasons = {
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        422: "Unprocessable Entity",
        429: "Too Many Requests",
    }
    body = {"error": reasons.get(status, "Conflict"), "status": status, "message": message}
    return web.json_response(body, status=status)


def _http_error(status: int, message: str) -> web.HTTPException:
    kind = {400: web.HTTPBadRequest, 401: web.HTTPUnauthorized}[status]
    return kind(text=_error(status, message).text, content_type="application/json")


# ---- documented example payloads ---------------------------------------------------

BROADCASTER = {
    "broadcaster_user_id": BROADCASTER_ID,
    "broadcaster_user_login": BROADCASTER_LOGIN,
    "broadcaster_user_name": BROADCASTER_LOGIN.title(),
}

EXAMPLE_EVENTS: dict[str, dict[str, Any]] = {
    "channel.chat.message": BROADCASTER
    | {
        "chatter_user_id": "4145994",
        "chatter_user_login": "viewer32",
        "chatter_user_name": "Viewer32",
        "message_id": "cc106a89-1814-919d-454c-f4f2f970aae7",
        "message": {
            "text": "Hi chat",
            "fragments": [
                {
                    "type": "text",
                    "text": "Hi chat",
                    "cheermote": None,
                    "emote": None,
                    "mention": None,
                }
            ],
        },
        "color": "#00FF7F",
        "badges": [{"set_id": "moderator", "id": "1", "info": ""}],
        "message_type": "text",
        "cheer": None,
        "reply": None,
        "channel_points_custom_reward_id": None,
        "channel_points_animation_id": None,
        "source_broadcaster_user_id": None,
        "source_broadcaster_user_login": None,
        "source_broadcaster_user_name": None,
        "source_message_id": None,
        "source_badges": None,
        "is_source_only": None,
    },
    "channel.subscribe": BROADCASTER
    | {
        "user_id": "1234",
        "user_login": "cool_user",
        "user_name": "Cool_User",
        "tier": "1000",
        "is_gift": False,
    },
    "channel.subscription.message": BROADCASTER
    | {
        "user_id": "1234",
        "user_login": "cool_user",
        "user_name": "Cool_User",
        "tier": "2000",
        "message": {
            "text": "Love the stream! FevziGG",
            "emotes": [{"begin": 23, "end": 30, "id": "302976485"}],
        },
        "cumulative_months": 15,
        "streak_months": 1,
        "duration_months": 6,
    },
    "channel.subscription.gift": BROADCASTER
    | {
        "user_id": "1234",
        "user_login": "cool_user",
        "user_name": "Cool_User",
        "total": 2,
        "tier": "1000",
        "cumulative_total": 284,
        "is_anonymous": False,
    },
    "channel.cheer": BROADCASTER
    | {
        "is_anonymous": False,
        "user_id": "1234",
        "user_login": "cool_user",
        "user_name": "Cool_User",
        "message": "pogchamp",
        "bits": 1000,
    },
    "channel.raid": {
        "from_broadcaster_user_id": "1234",
        "from_broadcaster_user_login": "cool_user",
        "from_broadcaster_user_name": "Cool_User",
        "to_broadcaster_user_id": BROADCASTER_ID,
        "to_broadcaster_user_login": BROADCASTER_LOGIN,
        "to_broadcaster_user_name": BROADCASTER_LOGIN.title(),
        "viewers": 9001,
    },
    "channel.follow": BROADCASTER
    | {
        "user_id": "1234",
        "user_login": "cool_user",
        "user_name": "Cool_User",
        "followed_at": "2020-07-15T18:16:11.17106713Z",
    },
    "stream.online": BROADCASTER
    | {"id": "9001", "type": "live", "started_at": "2020-10-11T10:11:12.123Z"},
    "stream.offline": dict(BROADCASTER),
}
"""One documented example ``event`` per subscription type, on the double's broadcaster."""


def example_event(subscription_type: str, **overrides: Any) -> dict[str, Any]:
    """A copy of the documented example event of a type, with fields replaced."""
    copied: dict[str, Any] = json.loads(json.dumps(EXAMPLE_EVENTS[subscription_type]))
    return copied | overrides


def webhook_body(subscription_type: str, event: Mapping[str, Any]) -> dict[str, Any]:
    """A webhook notification body: ``subscription`` (webhook transport) + ``event``."""
    version = "2" if subscription_type == "channel.follow" else "1"
    subscription = {
        "id": "f1c2a387-161a-49f9-a165-0f21d7a4e1c4",
        "status": "enabled",
        "type": subscription_type,
        "version": version,
        "condition": {"broadcaster_user_id": BROADCASTER_ID},
        "transport": {"method": "webhook", "callback": "https://example.com/webhooks/twitch"},
        "created_at": "2019-11-16T10:11:12.634234626Z",
        "cost": 0,
    }
    return {"subscription": subscription, "event": dict(event)}


def webhook_headers(
    secret: str,
    body: bytes,
    *,
    message_type: str = "notification",
    message_id: str | None = None,
    timestamp: str | None = None,
    subscription_type: str = "channel.cheer",
) -> dict[str, str]:
    """Headers Twitch sends with a webhook message, signed with ``secret``."""
    message_id = message_id or str(uuid.uuid4())
    timestamp = timestamp or rfc3339()
    digest = hmac.new(
        secret.encode(), message_id.encode() + timestamp.encode() + body, hashlib.sha256
    ).hexdigest()
    return {
        "Content-Type": "application/json",
        "Twitch-Eventsub-Message-Id": message_id,
        "Twitch-Eventsub-Message-Retry": "0",
        "Twitch-Eventsub-Message-Type": message_type,
        "Twitch-Eventsub-Message-Signature": f"sha256={digest}",
        "Twitch-Eventsub-Message-Timestamp": timestamp,
        "Twitch-Eventsub-Subscription-Type": subscription_type,
        "Twitch-Eventsub-Subscription-Version": "2"
        if subscription_type == "channel.follow"
        else "1",
    }
