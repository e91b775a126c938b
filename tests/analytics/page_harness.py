"""A stand-in analytics server for the dashboard page's browser tests.

It serves ``services/analytics/static`` the way the real app does (``/`` is
``index.html``, the folder is mounted at ``/static``, ``shared/vendor`` at
``/static/vendor``), a WebSocket at
``/ws/metrics`` that the test drives (push messages, drop the connection, refuse
new ones), and canned ``/api/channels``, ``/api/channels/{channel}/timeline``,
``.../bandit`` and ``.../retros``. Like the real service it takes the token as ``?token=`` or a
bearer header, and closes a socket with a wrong one with 1008 and a reason. It
listens on a free port of 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, web

from shared.assets import VENDOR_DIR

STATIC_DIR = Path(__file__).resolve().parents[2] / "services" / "analytics" / "static"
TOKEN_REFUSED = "this dashboard needs its token"


def iso(moment: datetime) -> str:
    """``2026-02-27T10:30:00Z`` style, as the analytics service writes times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sample_timeline(channel: str = "demo", now: datetime | None = None) -> dict[str, Any]:
    # duration_s as the analytics API gives it: to the channel clock while on air.
    """Three finished segments and one on air, ending around ``now``."""
    now = now or datetime.now(UTC)
    start = now - timedelta(minutes=95)
    plan = [
        ("talk", 20, "sim", "opening chat"),
        ("game", 40, "sim", "chat asked for a game"),
        ("react", 15, "bandit", "highest sampled reward"),
    ]
    segments: list[dict[str, str | None]] = []
    for activity, minutes, decided_by, reason in plan:
        end = start + timedelta(minutes=minutes)
        segments.append(
            {
                "activity": activity,
                "start": iso(start),
                "end": iso(end),
                "decided_by": decided_by,
                "reason": reason,
                "duration_s": minutes * 60.0,
            }
        )
        start = end
    segments.append(
        {
            "activity": "talk",
            "start": iso(start),
            "end": None,
            "decided_by": "bandit",
            "reason": "engagement dipped",
            "duration_s": (now - start).total_seconds(),
        }
    )
    return {"channel": channel, "segments": segments}


def sample_bandit() -> dict[str, Any]:
    """Posteriors of three arms."""
    return {
        "arms": [
            {"arm": "talk", "alpha": 3.0, "beta": 2.0, "mean": 0.6, "sd": 0.2, "updates": 4},
            {"arm": "game", "alpha": 8.0, "beta": 4.0, "mean": 8.0 / 12.0},
            {"arm": "react", "alpha": 1.0, "beta": 3.0, "mean": 0.25},
        ]
    }


@dataclass(frozen=True)
class ApiCall:
    """One request the page made to ``/api/...``."""

    path: str
    token_query: str | None
    authorization: str | None


class PageHarness:
    """The page's server for one test. Change the public attributes at any time."""

    def __init__(self, channel: str = "demo") -> None:
        self.channel = channel
        self.token: str | None = None  # when set, the socket and the API require it
        self.timeline: dict[str, Any] = sample_timeline(channel)
        self.bandit: dict[str, Any] | None = sample_bandit()  # None: answer 404
        self.retros: list[dict[str, Any]] = []  # the post-stream reports listed
        self.accepting = True  # False: refuse WebSocket upgrades with 503
        self.socket_queries: list[dict[str, str]] = []  # query of every accepted socket
        self.api_calls: list[ApiCall] = []
        self._sockets: dict[web.WebSocketResponse, web.Request] = {}
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # -------------------------------------------------------------- lifecycle

    async def start(self) -> str:
        """Listen on a free 127.0.0.1 port; return the base URL."""
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_static("/static/vendor", VENDOR_DIR)
        app.router.add_static("/static", STATIC_DIR)
        app.router.add_get("/ws/metrics", self._ws_metrics)
        app.router.add_get("/api/channels", self._channels)
        app.router.add_get("/api/channels/{channel}/timeline", self._timeline)
        app.router.add_get("/api/channels/{channel}/bandit", self._bandit)
        app.router.add_get("/api/channels/{channel}/retros", self._retros)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        return self.base_url

    async def stop(self) -> None:
        """Drop every socket and stop listening."""
        await self.drop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------ test driving

    @property
    def connected(self) -> int:
        """Sockets open right now."""
        return len(self._sockets)

    async def wait_for_sockets(self, accepted: int, within: float = 10.0) -> None:
        """Wait until ``accepted`` sockets were accepted in all and one is open (``within`` s)."""

        def ready() -> bool:
            return len(self.socket_queries) >= accepted and bool(self._sockets)

        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(ready)

    async def push(self, message_type: str, data: Any, **envelope: Any) -> None:
        """Send ``{"type": ..., "data": ...}`` (plus ``envelope`` keys) to every open socket."""
        await self.push_raw(json.dumps({"type": message_type, "data": data, **envelope}))

    async def push_raw(self, text: str) -> None:
        """Send one text frame to every open socket (there must be one)."""
        if not self._sockets:
            raise AssertionError("no dashboard socket is open")
        for socket in list(self._sockets):
            await socket.send_str(text)

    async def drop(self) -> None:
        """Cut every open socket as a network failure would (no close handshake)."""
        for request in list(self._sockets.values()):
            if request.transport is not None:
                request.transport.abort()
        async with asyncio.timeout(5), self._changed:
            await self._changed.wait_for(lambda: not self._sockets)

    def calls_to(self, suffix: str) -> list[ApiCall]:
        """API calls whose path ends with ``suffix`` (e.g. ``"/timeline"``)."""
        return [call for call in self.api_calls if call.path.endswith(suffix)]

    # --------------------------------------------------------------- handlers

    async def _index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "index.html")

    async def _ws_metrics(self, request: web.Request) -> web.StreamResponse:
        if not self.accepting:
            raise web.HTTPServiceUnavailable()
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        if self.token is not None and request.query.get("token") != self.token:
            await socket.close(code=WSCloseCode.POLICY_VIOLATION, message=TOKEN_REFUSED.encode())
            return socket
        async with self._changed:
            self._sockets[socket] = request
            self.socket_queries.append(dict(request.query))
            self._changed.notify_all()
        try:
            async for _ in socket:  # the page sends nothing; wait for the end
                pass
        finally:
            async with self._changed:
                self._sockets.pop(socket, None)
                self._changed.notify_all()
        return socket

    async def _channels(self, request: web.Request) -> web.Response:
        self._check(request)
        return web.json_response(
            [{"channel": self.channel, "is_live": True, "current_activity": "talk"}]
        )

    async def _timeline(self, request: web.Request) -> web.Response:
        self._check(request)
        return web.json_response(self.timeline)

    async def _bandit(self, request: web.Request) -> web.Response:
        self._check(request)
        if self.bandit is None:
            raise web.HTTPNotFound(text='{"detail": "bandit not running"}')
        return web.json_response(self.bandit)

    async def _retros(self, request: web.Request) -> web.Response:
        self._check(request)
        return web.json_response(self.retros)

    def _check(self, request: web.Request) -> None:
        """Record the call; refuse a wrong token or an unknown channel."""
        authorization = request.headers.get("Authorization")
        self.api_calls.append(ApiCall(request.path, request.query.get("token"), authorization))
        if self.token is not None and authorization != f"Bearer {self.token}":
            raise web.HTTPUnauthorized()
        if request.match_info.get("channel", self.channel) != self.channel:
            raise web.HTTPNotFound()
