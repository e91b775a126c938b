"""A client of the documented EventSub WebSocket protocol, and the retry policy it shares.

twitchio's own EventSub WebSocket client is not used, for two reasons found in its
source (3.3.2): after a dropped socket it reconnects to its module constant
``WSS`` whatever URL it was first given, so ``TWITCH_EVENTSUB_WS_URL`` cannot hold;
and it hands listeners parsed models, not the documented JSON that
:mod:`services.ingest.sources.eventsub` maps for both transports.
:class:`EventSubSocket` is a small client of the protocol instead (welcome,
keepalive, notification, ``session_reconnect``, revocation, close codes); the
source (:mod:`services.ingest.sources.twitch`) gives it the callback that creates
the subscriptions after every fresh welcome and the one that handles a
notification. :func:`is_transient` and :func:`retry_transient` say which errors
(network, Twitch 5xx/429, Redis unreachable) are retried, for the socket and the
Helix calls alike.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import warnings
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from typing import Any, TypeVar

import aiohttp

from shared.redis_client import CONNECTION_ERRORS

with warnings.catch_warnings():
    # twitchio's AiohttpAdapter subclasses aiohttp's web.Application, which aiohttp flags
    # with a DeprecationWarning at import time; the adapter is not used here.
    warnings.filterwarnings("ignore", "Inheritance class AiohttpAdapter", DeprecationWarning)
    import twitchio

log = logging.getLogger("services.ingest.twitch")

T = TypeVar("T")

WELCOME_TIMEOUT_S = 10.0
"""How long a new connection may take to send ``session_welcome``."""
CONNECT_TIMEOUT_S = 10.0
"""How long the WebSocket handshake may take."""
CLOSE_TIMEOUT_S = 3.0
"""How long closing a connection waits for the server's close frame."""
KEEPALIVE_SLACK = 1.5
"""Silence longer than ``keepalive_timeout_seconds`` x this means the connection is dead."""
DRAIN_TIMEOUT_S = 0.05
"""How long to wait for more messages on a connection being replaced after a reconnect."""
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0

CLOSE_REASONS = {
    4000: "internal server error",
    4001: "client sent inbound traffic",
    4002: "client failed ping-pong",
    4003: "connection unused",
    4004: "reconnect grace time expired",
    4005: "network timeout",
    4006: "network error",
    4007: "invalid reconnect",
}
"""EventSub WebSocket close codes, as documented."""


class ConnectionLost(Exception):
    """The EventSub connection ended (closed, dropped, silent or off-protocol)."""


def reconnect_delay_s(attempt: int) -> float:
    """Seconds before retry ``attempt`` (0: at once): exponential with jitter, capped."""
    if attempt <= 0:
        return 0.0
    return min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0 ** (attempt - 1)) * random.uniform(0.5, 1.0)


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` is worth retrying: network trouble, Twitch 5xx/429, Redis unreachable."""
    if isinstance(error, twitchio.HTTPException):
        return error.status >= 500 or error.status == 429
    return isinstance(
        error, (aiohttp.ClientError, TimeoutError, ConnectionLost, *CONNECTION_ERRORS)
    )


async def retry_transient(what: str, action: Callable[[], Awaitable[T]]) -> T:
    """``await action()`` until it succeeds, backing off after transient errors.

    Any other error propagates; cancel the caller to give up.
    """
    attempt = 0
    while True:
        try:
            return await action()
        except Exception as error:
            if not is_transient(error):
                raise
            attempt += 1
            delay = reconnect_delay_s(attempt)
            log.warning("%s failed (%s); retrying in %.1f s", what, describe(error), delay)
            await asyncio.sleep(delay)


def describe(error: BaseException) -> str:
    """A one-line account of ``error`` for logs."""
    if isinstance(error, twitchio.HTTPException):
        return f"Twitch answered {error.status}: {error.extra.get('message', '')}".rstrip(": ")
    return str(error) or type(error).__name__


class EventSubSocket:
    """Keeps one EventSub WebSocket session alive and hands over its notifications.

    After each fresh ``session_welcome`` it awaits ``subscribe(session_id)``: Twitch
    deletes a session's subscriptions when its connection closes, so a new
    connection starts empty. A ``session_reconnect`` is followed by connecting to
    its ``reconnect_url``, where the subscriptions carry over, and closing the old
    connection once the new one is welcomed. Drops, close frames and missed
    keepalives lead to a fresh connection after a backoff.
    """

    def __init__(
        self,
        url: str,
        http: aiohttp.ClientSession,
        *,
        subscribe: Callable[[str], Awaitable[None]],
        on_notification: Callable[[Mapping[str, Any]], Awaitable[None]],
    ) -> None:
        self._url = url
        self._http = http
        self._subscribe = subscribe
        self._on_notification = on_notification
        self._silence_limit_s = 10 * KEEPALIVE_SLACK
        self._subscribed = False

    async def run_forever(self) -> None:
        """Connect, listen and reconnect until cancelled."""
        attempt = 0
        while True:
            await asyncio.sleep(reconnect_delay_s(attempt))
            self._subscribed = False
            try:
                await self._run_connection()
            except Exception as error:
                if not is_transient(error):
                    raise
                log.warning("EventSub connection lost (%s); reconnecting", describe(error))
            attempt = 0 if self._subscribed else attempt + 1

    async def _run_connection(self) -> None:
        socket = await self._open(self._url, fresh=True)
        try:
            while True:
                reconnect_url = await self._listen(socket)
                old, socket = socket, await self._open(reconnect_url, fresh=False)
                await self._retire(old)
                log.info("EventSub session moved to %s as Twitch asked", reconnect_url)
        finally:
            await socket.close()

    async def _open(self, url: str, *, fresh: bool) -> aiohttp.ClientWebSocketResponse:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            socket = await self._http.ws_connect(
                url, autoping=True, timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_TIMEOUT_S)
            )
        try:
            session_id = await self._welcome(socket)
            if fresh:
                await self._subscribe(session_id)
                self._subscribed = True
        except BaseException:
            await socket.close()
            raise
        return socket

    async def _retire(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        """Handle notifications the old connection delivered before the new welcome, then close it.

        Twitch keeps sending on the old connection until the new one is welcomed, and
        closing discards anything unread.
        """
        try:
            with suppress(ConnectionLost):
                while True:
                    message = await self._next(socket, DRAIN_TIMEOUT_S)
                    if _message_type(message) == "notification":
                        await self._on_notification(message)
        finally:
            await socket.close()

    async def _welcome(self, socket: aiohttp.ClientWebSocketResponse) -> str:
        message = await self._next(socket, WELCOME_TIMEOUT_S)
        session = _session_of(message, "session_welcome")
        session_id = session.get("id")
        if not isinstance(session_id, str) or not session_id:
            raise ConnectionLost("session_welcome without a session id")
        keepalive_s = session.get("keepalive_timeout_seconds")
        if isinstance(keepalive_s, int) and keepalive_s > 0:
            self._silence_limit_s = keepalive_s * KEEPALIVE_SLACK
        log.info("EventSub session %s open (keepalive %s s)", session_id, keepalive_s)
        return session_id

    async def _listen(self, socket: aiohttp.ClientWebSocketResponse) -> str:
        """Handle messages until the connection ends; return the ``reconnect_url`` if asked."""
        while True:
            message = await self._next(socket, self._silence_limit_s)
            kind = _message_type(message)
            if kind == "notification":
                await self._on_notification(message)
            elif kind == "session_reconnect":
                return _reconnect_url(message)
            elif kind == "revocation":
                _log_revocation(message)
            elif kind != "session_keepalive":
                log.warning("ignored EventSub message of unexpected type %r", kind)

    async def _next(self, socket: aiohttp.ClientWebSocketResponse, timeout_s: float) -> Any:
        """The next JSON message; skips (and logs) frames that are not a JSON object."""
        while True:
            try:
                frame = await socket.receive(timeout=timeout_s)
            except TimeoutError as error:
                raise ConnectionLost(f"no message for {timeout_s:.1f} s") from error
            if frame.type is not aiohttp.WSMsgType.TEXT:
                _raise_if_closed(frame, socket)
                continue
            message = _json_object(frame.data)
            if message is not None:
                return message


def _json_object(text: str) -> Mapping[str, Any] | None:
    try:
        message = json.loads(text)
    except ValueError:
        log.warning("dropped EventSub message that is not JSON: %.120r", text)
        return None
    if not isinstance(message, dict) or not isinstance(message.get("metadata"), dict):
        log.warning("dropped EventSub message without a metadata object: %.120r", text)
        return None
    return message


def _message_type(message: Mapping[str, Any]) -> Any:
    return message["metadata"].get("message_type")


def _session_of(message: Mapping[str, Any], expected_type: str) -> Mapping[str, Any]:
    kind = _message_type(message)
    payload = message.get("payload")
    session = payload.get("session") if isinstance(payload, dict) else None
    if kind != expected_type or not isinstance(session, dict):
        raise ConnectionLost(f"expected {expected_type} with a session, got {kind!r}")
    return session


def _reconnect_url(message: Mapping[str, Any]) -> str:
    url = _session_of(message, "session_reconnect").get("reconnect_url")
    if not isinstance(url, str) or not url:
        raise ConnectionLost("session_reconnect without a reconnect_url")
    return url


def _log_revocation(message: Mapping[str, Any]) -> None:
    payload = message.get("payload")
    subscription = payload.get("subscription") if isinstance(payload, dict) else None
    details = subscription if isinstance(subscription, dict) else {}
    log.warning(
        "Twitch revoked the %s subscription (%s); its events stop arriving",
        details.get("type", "?"),
        details.get("status", "no reason given"),
    )


def _raise_if_closed(frame: aiohttp.WSMessage, socket: aiohttp.ClientWebSocketResponse) -> None:
    if frame.type is aiohttp.WSMsgType.ERROR:
        raise ConnectionLost(f"socket error: {socket.exception()}")
    if frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
        code = socket.close_code
        reason = CLOSE_REASONS.get(code or 0, "connection closed")
        raise ConnectionLost(f"closed with code {code}: {reason}")
