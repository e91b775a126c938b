"""What the Twitch double knows: its app, accounts and tokens, subscriptions and sessions.

The constants are the double's fixed identities, which tests use to configure clients;
:class:`TwitchState` holds what clients did, shared by the double's HTTP and WebSocket
parts.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

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


class TwitchState:
    """What the double knows and the controls every part of it shares.

    :class:`~tests.ingest.twitch_double.TwitchDouble` is this state served over HTTP
    (:mod:`tests.ingest.twitch_helix`) and the EventSub WebSocket
    (:mod:`tests.ingest.twitch_eventsub`)."""

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
