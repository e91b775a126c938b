"""The ``twitch`` ingest source: EventSub over WebSocket plus a Helix ``/streams`` poll.

twitchio 3 does the HTTP side: the app token, validating (and refreshing) the user
token, and the Helix calls (``users``, ``eventsub/subscriptions``, ``streams``). It
builds every URL from the public class attributes ``twitchio.Route.BASE`` (Helix)
and ``Route.ID_BASE`` (OAuth), so :func:`twitchio_endpoints` points those at
``TWITCH_API_URL`` / ``TWITCH_AUTH_URL`` while the source runs.

twitchio's own EventSub WebSocket client is not used, for two reasons found in its
source (3.3.2): after a dropped socket it reconnects to its module constant
``WSS`` whatever URL it was first given, so ``TWITCH_EVENTSUB_WS_URL`` cannot hold;
and it hands listeners parsed models, not the documented JSON that
:mod:`services.ingest.eventsub` maps for both transports. :class:`EventSubSocket`
is a small client of the documented protocol instead (welcome, keepalive,
notification, ``session_reconnect``, revocation) that creates the subscriptions
through twitchio after every fresh welcome.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

import aiohttp

from services.ingest.buffer import BufferFull, PublishBuffer
from services.ingest.eventsub import (
    SUBSCRIPTION_VERSIONS,
    EventSubPayloadError,
    Ignored,
    LiveStreams,
    Notification,
    map_notification,
)
from services.ingest.settings import IngestSettings
from shared.clock import FutureTimestampError, epoch_ms, utc_now
from shared.events import (
    EventBase,
    StreamEndedEvent,
    StreamStartedEvent,
    ViewerCountEvent,
    dead_letter_of,
    refuse_future_events,
)
from shared.redis_client import CONNECTION_ERRORS

with warnings.catch_warnings():
    # twitchio's AiohttpAdapter subclasses aiohttp's web.Application, which aiohttp flags
    # with a DeprecationWarning at import time; the adapter is not used here.
    warnings.filterwarnings("ignore", "Inheritance class AiohttpAdapter", DeprecationWarning)
    import twitchio
    from twitchio.eventsub import SubscriptionType

if TYPE_CHECKING:
    from twitchio.types_.conduits import Condition

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


class TwitchSetupError(RuntimeError):
    """The source cannot run as configured: a setting is missing or Twitch refused it."""


class ConnectionLost(Exception):
    """The EventSub connection ended (closed, dropped, silent or off-protocol)."""


@dataclass(frozen=True)
class SubscriptionRequest:
    """One EventSub subscription to create on each new session."""

    type: str
    version: str
    condition: dict[str, str]


@dataclass(frozen=True)
class LiveSnapshot:
    """What Helix ``/streams`` says about a live stream."""

    stream_id: str
    viewers: int
    started_at: datetime


def subscription_requests(
    settings: IngestSettings, token_user_id: str
) -> list[SubscriptionRequest]:
    """Every subscription the source needs, for ``TWITCH_BROADCASTER_ID``.

    Chat is read as ``TWITCH_BOT_ID``; follows need a moderator, the token's user.
    """
    broadcaster = settings.twitch_broadcaster_id
    special = {
        "channel.chat.message": {
            "broadcaster_user_id": broadcaster,
            "user_id": settings.twitch_bot_id,
        },
        "channel.raid": {"to_broadcaster_user_id": broadcaster},
        "channel.follow": {"broadcaster_user_id": broadcaster, "moderator_user_id": token_user_id},
    }
    return [
        SubscriptionRequest(kind, version, special.get(kind, {"broadcaster_user_id": broadcaster}))
        for kind, version in SUBSCRIPTION_VERSIONS.items()
    ]


@contextmanager
def twitchio_endpoints(api_url: str, auth_url: str) -> Iterator[None]:
    """Point twitchio's Helix and OAuth requests at ``api_url`` and ``auth_url`` while inside.

    twitchio has no per-client base URL: every request is built from the class
    attributes ``Route.BASE`` and ``Route.ID_BASE``, so this sets them for the whole
    process and restores the previous values on exit. OAuth paths are
    ``/oauth2/...`` under ``ID_BASE``, so ``auth_url`` must end in ``/oauth2``.
    """
    auth = auth_url.rstrip("/")
    if not auth.endswith("/oauth2"):
        raise TwitchSetupError(f"TWITCH_AUTH_URL must end in /oauth2, got {auth_url!r}")
    previous = twitchio.Route.BASE, twitchio.Route.ID_BASE
    twitchio.Route.BASE = api_url.rstrip("/") + "/"
    twitchio.Route.ID_BASE = auth.removesuffix("oauth2")
    try:
        yield
    finally:
        twitchio.Route.BASE, twitchio.Route.ID_BASE = previous


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


def poll_events(
    channel: str,
    snapshot: LiveSnapshot | None,
    live: LiveStreams,
    confirmed: set[str],
    now: datetime,
) -> list[EventBase]:
    """Events a Helix ``/streams`` answer implies, given what ``live`` already knows.

    A live stream yields a viewer count, and a start when the ``stream.online``
    notification was missed. Helix lags notifications at both ends, so a stream is
    only ended from the poll once Helix itself had reported it live (``confirmed``),
    and a stream already seen ending is not revived. Ids (``online:{id}``,
    ``offline:{id}``) match the notification mapping, so the publisher keeps one.
    """
    current = live.current(channel)
    if snapshot is None:
        return [_ended(channel, current, now)] if current and current in confirmed else []
    if live.has_ended(channel, snapshot.stream_id):
        return []
    events: list[EventBase] = []
    if current != snapshot.stream_id:
        if current is not None:
            events.append(_ended(channel, current, now))
        events.append(_started(channel, snapshot))
    events.append(_viewers(channel, snapshot, now))
    return events


def _ended(channel: str, stream_id: str, now: datetime) -> StreamEndedEvent:
    return StreamEndedEvent(
        id=f"offline:{stream_id}", channel=channel, ts=now, source="twitch", stream_id=stream_id
    )


def _started(channel: str, snapshot: LiveSnapshot) -> StreamStartedEvent:
    return StreamStartedEvent(
        id=f"online:{snapshot.stream_id}",
        channel=channel,
        ts=snapshot.started_at,
        source="twitch",
        stream_id=snapshot.stream_id,
    )


def _viewers(channel: str, snapshot: LiveSnapshot, now: datetime) -> ViewerCountEvent:
    polled_ms = epoch_ms(now)
    return ViewerCountEvent(
        id=f"viewers:{snapshot.stream_id}:{polled_ms}",
        channel=channel,
        ts=now,
        source="twitch",
        count=snapshot.viewers,
    )


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


DEAD_LETTER_GROUP = "ingest:twitch"
"""The ``group`` of dead letters the EventSub socket writes (no consumer group refused them)."""


class TwitchSource:
    """The ``twitch`` source: Twitch events and viewer counts onto the event streams.

    Subscribes to every type in :data:`~services.ingest.eventsub.SUBSCRIPTION_VERSIONS`
    for ``TWITCH_BROADCASTER_ID`` over the EventSub WebSocket, maps each notification
    with :mod:`services.ingest.eventsub` and publishes it, and polls Helix
    ``/streams`` every ``TWITCH_VIEWER_POLL_S`` for viewer counts and to catch
    missed stream starts and ends.
    """

    def __init__(
        self, settings: IngestSettings, buffer: PublishBuffer, live: LiveStreams | None = None
    ) -> None:
        self._settings = settings
        self._buffer = buffer
        self.live = live or LiveStreams()
        self._confirmed_live: set[str] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Ingest until ``stop`` is set, then close every connection and return.

        Network trouble, Twitch errors and Redis outages are logged and retried.
        Raises :class:`TwitchSetupError` when a setting is missing or Twitch refuses
        the credentials, since waiting cannot fix either.
        """
        self._check_settings()
        settings = self._settings
        with twitchio_endpoints(settings.twitch_api_url, settings.twitch_auth_url):
            await _run_until(self._work(), stop)

    def _check_settings(self) -> None:
        names = ["client_id", "client_secret", "bot_id", "broadcaster_id", "user_token"]
        missing = [f"TWITCH_{name.upper()}" for name in names if not _setting(self._settings, name)]
        if missing:
            raise TwitchSetupError(f"the twitch source needs {', '.join(missing)} to be set")

    async def _work(self) -> None:
        client, token_user_id = await retry_transient("logging in to Twitch", self._login)
        try:
            await self._serve(client, token_user_id)
        finally:
            await client.close(save_tokens=False)

    async def _login(self) -> tuple[twitchio.Client, str]:
        settings = self._settings
        client = twitchio.Client(
            client_id=settings.twitch_client_id,
            client_secret=settings.twitch_client_secret.get_secret_value(),
        )
        try:
            await client.login(load_tokens=False, save_tokens=False)
            validated = await client.add_token(
                settings.twitch_user_token.get_secret_value(),
                settings.twitch_refresh_token.get_secret_value(),
            )
        except Exception as error:
            await client.close(save_tokens=False)
            if is_transient(error):
                raise
            raise TwitchSetupError(f"Twitch refused the credentials: {describe(error)}") from error
        if not validated.user_id:
            await client.close(save_tokens=False)
            raise TwitchSetupError("TWITCH_USER_TOKEN is an app token; EventSub needs a user token")
        return client, validated.user_id

    async def _serve(self, client: twitchio.Client, token_user_id: str) -> None:
        channel = await retry_transient(
            "looking up the broadcaster", lambda: self._login_name(client)
        )
        requests = subscription_requests(self._settings, token_user_id)

        async def subscribe(session_id: str) -> None:
            await self._subscribe_all(client, token_user_id, requests, session_id)

        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            socket = EventSubSocket(
                self._settings.twitch_eventsub_ws_url,
                http,
                subscribe=subscribe,
                on_notification=self._on_notification,
            )
            async with asyncio.TaskGroup() as group:
                group.create_task(socket.run_forever())
                group.create_task(self._poll_forever(client, channel))

    async def _login_name(self, client: twitchio.Client) -> str:
        broadcaster_id = self._settings.twitch_broadcaster_id
        users = await client.fetch_users(ids=[broadcaster_id])
        if not users or not users[0].name:
            raise TwitchSetupError(
                f"Twitch knows no user with TWITCH_BROADCASTER_ID {broadcaster_id}"
            )
        login: str = users[0].name
        return login.lower()

    async def _subscribe_all(
        self,
        client: twitchio.Client,
        token_user_id: str,
        requests: list[SubscriptionRequest],
        session_id: str,
    ) -> None:
        created = 0
        for request in requests:
            created += await self._subscribe(client, token_user_id, request, session_id)
        log.info(
            "EventSub session %s: subscribed to %d of %d types", session_id, created, len(requests)
        )

    async def _subscribe(
        self,
        client: twitchio.Client,
        token_user_id: str,
        request: SubscriptionRequest,
        session_id: str,
    ) -> bool:
        try:
            await client.http.create_eventsub_subscription(
                type=SubscriptionType(request.type),
                version=request.version,
                condition=cast("Condition", request.condition),
                transport={"method": "websocket", "session_id": session_id},
                token_for=token_user_id,
            )
        except twitchio.HTTPException as error:
            if is_transient(error):
                raise
            if error.status == 409:  # already subscribed on this session
                return True
            log.error("Twitch refused the %s subscription (%s)", request.type, describe(error))
            return False
        return True

    async def _on_notification(self, message: Mapping[str, Any]) -> None:
        try:
            notification = Notification.from_websocket(message)
            result = map_notification(notification, self._settings, self.live)
        except EventSubPayloadError as error:
            log.warning(
                "dropped malformed EventSub notification %s: %s", _message_id(message), error
            )
            return
        if isinstance(result, Ignored):
            log.info("ignored %s notification: %s", notification.subscription_type, result.reason)
            return
        try:
            refuse_future_events([result], self._settings.max_clock_skew_s)
        except FutureTimestampError as error:
            await self._dead_letter(result, str(error))
            return
        await self._publish([result])

    async def _dead_letter(self, event: EventBase, reason: str) -> None:
        """Send a refused notification's event to ``events:dead`` with the reason."""
        log.warning("dead-lettering EventSub %s %s: %s", event.type, event.id, reason)
        stream_key = self._settings.keys.stream(event.stream)
        await self._buffer.dead_letter(dead_letter_of(event, reason, DEAD_LETTER_GROUP, stream_key))

    async def _poll_forever(self, client: twitchio.Client, channel: str) -> None:
        while True:
            await self._poll_once(client, channel)
            await asyncio.sleep(self._settings.twitch_viewer_poll_s)

    async def _poll_once(self, client: twitchio.Client, channel: str) -> None:
        broadcaster_id = self._settings.twitch_broadcaster_id
        try:
            streams = await client.fetch_streams(user_ids=[broadcaster_id], type="live")
        except (twitchio.HTTPException, aiohttp.ClientError, TimeoutError) as error:
            log.warning("Helix /streams poll failed (%s); will poll again", describe(error))
            return
        snapshot = None
        if streams:
            stream = streams[0]
            snapshot = LiveSnapshot(stream.id, stream.viewer_count, stream.started_at)
            self._confirmed_live.add(stream.id)
        await self._publish(
            poll_events(channel, snapshot, self.live, self._confirmed_live, utc_now())
        )

    async def _publish(self, events: list[EventBase]) -> None:
        for event in events:
            self.live.observe(event)
        if not events:
            return
        try:
            await self._buffer.submit(events, "twitch")
        except BufferFull as error:
            log.error("dropped %d EventSub events: %s", len(events), error)


async def _run_until(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> None:
    """Run ``work`` until it ends or ``stop`` is set; then cancel it and wait for its cleanup."""
    task = asyncio.create_task(work)
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        task.cancel()
        stopped.cancel()
        await asyncio.gather(task, stopped, return_exceptions=True)
    error = None if task.cancelled() else task.exception()
    if error is not None:
        raise error


def _setting(settings: IngestSettings, name: str) -> str:
    value = getattr(settings, f"twitch_{name}")
    return str(value.get_secret_value() if hasattr(value, "get_secret_value") else value)


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


def _message_id(message: Mapping[str, Any]) -> str:
    return str(message.get("metadata", {}).get("message_id", "(no message id)"))


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
