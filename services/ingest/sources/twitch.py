"""The ``twitch`` ingest source: EventSub over WebSocket plus a Helix ``/streams`` poll.

twitchio 3 does the HTTP side: the app token, validating (and refreshing) the user
token, and the Helix calls (``users``, ``eventsub/subscriptions``, ``streams``). It
builds every URL from the public class attributes ``twitchio.Route.BASE`` (Helix)
and ``Route.ID_BASE`` (OAuth), so :func:`twitchio_endpoints` points those at
``TWITCH_API_URL`` / ``TWITCH_AUTH_URL`` while the source runs.

The WebSocket itself is :class:`~services.ingest.sources.eventsub_socket.EventSubSocket`,
a small client of the documented protocol (twitchio's own is not used; that module
says why), which this source gives the subscriptions to create through twitchio
after every fresh welcome.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Coroutine, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import aiohttp

from services.ingest.buffer import BufferFull, PublishBuffer
from services.ingest.settings import IngestSettings
from services.ingest.sources.eventsub import (
    SUBSCRIPTION_VERSIONS,
    EventSubPayloadError,
    Ignored,
    LiveStreams,
    Notification,
    map_notification,
)
from services.ingest.sources.eventsub_socket import (
    CONNECT_TIMEOUT_S,
    EventSubSocket,
    describe,
    is_transient,
    retry_transient,
)
from shared.clock import FutureTimestampError, epoch_ms, utc_now
from shared.events import (
    EventBase,
    StreamEndedEvent,
    StreamStartedEvent,
    ViewerCountEvent,
    dead_letter_of,
    refuse_future_events,
)

with warnings.catch_warnings():
    # twitchio's AiohttpAdapter subclasses aiohttp's web.Application, which aiohttp flags
    # with a DeprecationWarning at import time; the adapter is not used here.
    warnings.filterwarnings("ignore", "Inheritance class AiohttpAdapter", DeprecationWarning)
    import twitchio
    from twitchio.eventsub import SubscriptionType

if TYPE_CHECKING:
    from twitchio.types_.conduits import Condition

log = logging.getLogger("services.ingest.twitch")


class TwitchSetupError(RuntimeError):
    """The source cannot run as configured: a setting is missing or Twitch refused it."""


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


DEAD_LETTER_GROUP = "ingest:twitch"
"""The ``group`` of dead letters the EventSub socket writes (no consumer group refused them)."""


class TwitchSource:
    """The ``twitch`` source: Twitch events and viewer counts onto the event streams.

    Subscribes to every type in :data:`~services.ingest.sources.eventsub.SUBSCRIPTION_VERSIONS`
    for ``TWITCH_BROADCASTER_ID`` over the EventSub WebSocket, maps each notification
    with :mod:`services.ingest.sources.eventsub` and publishes it, and polls Helix
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
        stream_key = self._settings.keys.channel_stream(event.stream, event.channel)
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


def _message_id(message: Mapping[str, Any]) -> str:
    return str(message.get("metadata", {}).get("message_id", "(no message id)"))
