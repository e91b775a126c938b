"""Twitch EventSub notifications mapped onto streamloop events, for both transports.

The WebSocket source (:mod:`services.ingest.sources.twitch`) and the webhook route
(:mod:`services.ingest.webhooks.twitch`) receive the same documented notification
(``subscription`` + ``event``, with a message id and timestamp), turn it into a
:class:`Notification` and call :func:`map_notification`. Mapping is pure apart
from reading :class:`LiveStreams`, which tells lifecycle events which stream is
live. A payload that does not fit raises :class:`EventSubPayloadError`; a type we
do not consume, or an event for a channel not in ``CHANNELS``, comes back as
:class:`Ignored` (the latter counted in ``streamloop_ingest_unknown_channel_total``:
a subscription for a channel this deployment does not serve is a setup mistake
to see, never state to create).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

from prometheus_client import Counter
from pydantic import ValidationError

from services.ingest.settings import IngestSettings
from shared.clock import parse_ts
from shared.events import (
    BitsEvent,
    ChatEvent,
    EventBase,
    FollowEvent,
    RaidEvent,
    StreamEndedEvent,
    StreamStartedEvent,
    SubEvent,
)

UNKNOWN_CHANNEL = Counter(
    "streamloop_ingest_unknown_channel_total",
    "EventSub notifications dropped because their channel is not in CHANNELS.",
    ["type"],
)

OFFLINE_STREAM_ID = "offline"
"""``stream_id`` of lifecycle events that happen while no stream is known to be live."""

SUBSCRIPTION_VERSIONS: dict[str, str] = {
    "channel.chat.message": "1",
    "channel.subscribe": "1",
    "channel.subscription.message": "1",
    "channel.subscription.gift": "1",
    "channel.cheer": "1",
    "channel.raid": "1",
    "channel.follow": "2",
    "stream.online": "1",
    "stream.offline": "1",
}
"""The subscription types this module maps, with the version whose payload it reads."""

KEPT_ENDED_STREAMS = 16
"""How many ended stream ids per channel :class:`LiveStreams` remembers."""

ANONYMOUS = "anonymous"
"""``user`` of anonymous cheers and gifts."""


class EventSubPayloadError(ValueError):
    """A notification that does not fit the documented EventSub shape; the message says why."""


@dataclass(frozen=True)
class Ignored:
    """A notification deliberately not turned into an event, and why."""

    reason: str


@dataclass(frozen=True)
class Notification:
    """One EventSub notification, independent of the transport that carried it."""

    message_id: str
    message_timestamp: datetime
    subscription_type: str
    subscription_version: str
    event: Mapping[str, Any]

    @classmethod
    def from_websocket(cls, message: Mapping[str, Any]) -> Notification:
        """Read a WebSocket ``notification`` message (``metadata`` + ``payload``)."""
        metadata = _object(message, "metadata")
        return cls.from_payload(
            _string(metadata, "message_id", "metadata"),
            _string(metadata, "message_timestamp", "metadata"),
            _object(message, "payload"),
        )

    @classmethod
    def from_payload(
        cls, message_id: str, message_timestamp: str, payload: Mapping[str, Any]
    ) -> Notification:
        """Read a notification body (``subscription`` + ``event``) and its message id and time.

        A webhook delivers the id and time as headers and the body as ``payload``.
        """
        if not isinstance(payload, Mapping):
            raise EventSubPayloadError("notification body must be a JSON object")
        subscription = _object(payload, "subscription")
        return cls(
            message_id=message_id,
            message_timestamp=_timestamp(message_timestamp, "message_timestamp"),
            subscription_type=_string(subscription, "type", "subscription"),
            subscription_version=_string(subscription, "version", "subscription"),
            event=_object(payload, "event"),
        )


class LiveStreams:
    """Which stream is live on each channel, as far as this process has seen.

    Follows, raids and stream ends need a ``stream_id``; the tracker remembers it
    from ``stream.online`` notifications and the Helix ``/streams`` poll, and keeps
    the last few ended ids so a late report of an ended stream is recognised.
    """

    def __init__(self) -> None:
        self._live: dict[str, str] = {}
        self._ended: dict[str, list[str]] = {}

    def current(self, channel: str) -> str | None:
        """Id of the stream live on ``channel``, or ``None`` when none is known."""
        return self._live.get(channel.lower())

    def lifecycle_stream_id(self, channel: str) -> str:
        """``stream_id`` for a lifecycle event on ``channel`` now (``"offline"`` if unknown)."""
        return self.current(channel) or OFFLINE_STREAM_ID

    def latest(self, channel: str) -> str | None:
        """The live stream's id, else the most recently ended one, else ``None``."""
        ended = self._ended.get(channel.lower(), [])
        return self.current(channel) or (ended[-1] if ended else None)

    def has_ended(self, channel: str, stream_id: str) -> bool:
        """Whether ``stream_id`` on ``channel`` was seen ending."""
        return stream_id in self._ended.get(channel.lower(), [])

    def observe(self, event: EventBase) -> None:
        """Update from an event: starts and ends move the tracker; an ended stream stays ended."""
        if isinstance(event, StreamStartedEvent):
            if not self.has_ended(event.channel, event.stream_id):
                self._live[event.channel] = event.stream_id
        elif isinstance(event, StreamEndedEvent) and event.stream_id != OFFLINE_STREAM_ID:
            if self._live.get(event.channel) == event.stream_id:
                del self._live[event.channel]
            ended = self._ended.setdefault(event.channel, [])
            ended[:] = [*ended[-(KEPT_ENDED_STREAMS - 1) :], event.stream_id]


MapResult: TypeAlias = EventBase | Ignored
Mapper: TypeAlias = Callable[["_Reader", IngestSettings, LiveStreams], MapResult]


def map_notification(
    notification: Notification, settings: IngestSettings, live: LiveStreams
) -> MapResult:
    """The event a notification stands for, or :class:`Ignored` with the reason.

    Raises :class:`EventSubPayloadError` naming the field when the payload does not fit.
    """
    kind = notification.subscription_type
    mapper = _MAPPERS.get(kind)
    if mapper is None:
        return Ignored(f"subscription type {kind!r} is not consumed")
    try:
        result = mapper(_Reader(notification), settings, live)
    except ValidationError as error:
        raise EventSubPayloadError(f"{kind}: {_describe(error)}") from error
    if isinstance(result, EventBase) and result.channel not in settings.channels:
        UNKNOWN_CHANNEL.labels(kind).inc()
        return Ignored(f"channel {_short(result.channel)} is not in CHANNELS")
    return result


class _Reader:
    """Typed access to a notification's ``event`` fields with readable errors."""

    def __init__(self, notification: Notification) -> None:
        self.notification = notification
        self.event = notification.event

    def text(self, name: str) -> str:
        value = self.event.get(name)
        if not isinstance(value, str) or not value:
            raise self.error(name, "a non-empty string", value)
        return value

    def optional_text(self, name: str) -> str | None:
        value = self.event.get(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise self.error(name, "a string or null", value)
        return value

    def integer(self, name: str) -> int:
        value = self.event.get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, "an integer", value)
        return value

    def flag(self, name: str) -> bool:
        value = self.event.get(name, False)
        if not isinstance(value, bool):
            raise self.error(name, "true or false", value)
        return value

    def moment(self, name: str) -> datetime:
        return _timestamp(self.event.get(name), f"event.{name}", self.kind)

    def message_text(self) -> str:
        message = self.event.get("message")
        if not isinstance(message, Mapping) or not isinstance(message.get("text"), str):
            raise self.error("message.text", "a string", message)
        text: str = message["text"]
        return text

    def common(self, channel_field: str = "broadcaster_user_login") -> dict[str, Any]:
        """Fields every mapped event shares: id, channel, time and source."""
        return {
            "id": self.notification.message_id,
            "channel": self.text(channel_field),
            "ts": self.notification.message_timestamp,
            "source": "twitch",
        }

    @property
    def kind(self) -> str:
        return self.notification.subscription_type

    def error(self, name: str, expected: str, value: Any) -> EventSubPayloadError:
        shown = "missing" if value is None and name not in self.event else f"got {_short(value)}"
        return EventSubPayloadError(f"{self.kind}: event.{name} must be {expected}, {shown}")


def _chat(event: _Reader, settings: IngestSettings, live: LiveStreams) -> MapResult:
    fields = event.common() | {"id": event.text("message_id")}
    return ChatEvent(**fields, user=event.text("chatter_user_login"), text=event.message_text())


def _sub(event: _Reader, settings: IngestSettings, live: LiveStreams) -> MapResult:
    if event.flag("is_gift"):
        return Ignored("gifted sub: counted once by its channel.subscription.gift")
    tier = event.text("tier")
    return SubEvent(
        **event.common(),
        type="sub",
        user=event.text("user_login"),
        tier=tier,
        amount=settings.sub_usd(tier),
    )


def _resub(event: _Reader, settings: IngestSettings, live: LiveStreams) -> MapResult:
    tier = event.text("tier")
    return SubEvent(
        **event.common(),
        type="resub",
        user=event.text("user_login"),
        tier=tier,
        months=event.integer("cumulative_months"),
        amount=settings.sub_usd(tier),
    )


def _gift(event: _Reader, settings: IngestSettings, live: LiveStreams) -> MapResult:
    tier, total = event.text("tier"), event.integer("total")
    gifter = None if event.flag("is_anonymous") else event.optional_text("user_login")
    return SubEvent(
        **event.common(),
        type="gift",
        user=gifter or ANONYMOUS,
        tier=tier,
        count=total,
        amount=settings.sub_usd(tier, total),
    )


def _cheer(event: _Reader, settings: IngestSettings, live: LiveStreams) -> MapResult:
    cheerer = None if event.flag("is_anonymous") else event.optional_text("user_login")
    return BitsEvent(
        **event.common(),
        user=cheerer or ANONYMOUS,
        bits=event.integer("bits"),
        message=event.optional_text("message") or "",
    )


def _raid(event: _Reader, settings: IngestSettings, live: LiveStreams) -> MapResult:
    fields = event.common("to_broadcaster_user_login")
    return RaidEvent(
        **fields,
        stream_id=live.lifecycle_stream_id(fields["channel"]),
        user=event.text("from_broadcaster_user_login"),
        count=event.integer("viewers"),
    )


def _follow(event: _Reader, settings: IngestSettings, live: LiveStreams) -> MapResult:
    fields = event.common() | {"ts": event.moment("followed_at")}
    return FollowEvent(
        **fields,
        stream_id=live.lifecycle_stream_id(fields["channel"]),
        user=event.text("user_login"),
    )


def _online(event: _Reader, settings: IngestSettings, live: LiveStreams) -> MapResult:
    stream_id = event.text("id")
    fields = event.common() | {"id": f"online:{stream_id}", "ts": event.moment("started_at")}
    return StreamStartedEvent(**fields, stream_id=stream_id)


def _offline(event: _Reader, settings: IngestSettings, live: LiveStreams) -> MapResult:
    fields = event.common()
    stream_id = live.latest(fields["channel"])
    if stream_id is None:
        # No stream id to key on: the message id keeps Twitch's redeliveries to one event.
        fields["id"] = f"offline:{fields['id']}"
        return StreamEndedEvent(**fields, stream_id=OFFLINE_STREAM_ID)
    return StreamEndedEvent(**fields | {"id": f"offline:{stream_id}"}, stream_id=stream_id)


_MAPPERS: dict[str, Mapper] = {
    "channel.chat.message": _chat,
    "channel.subscribe": _sub,
    "channel.subscription.message": _resub,
    "channel.subscription.gift": _gift,
    "channel.cheer": _cheer,
    "channel.raid": _raid,
    "channel.follow": _follow,
    "stream.online": _online,
    "stream.offline": _offline,
}


def _object(container: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = container.get(name) if isinstance(container, Mapping) else None
    if not isinstance(value, Mapping):
        raise EventSubPayloadError(f"{name} must be a JSON object, got {_short(value)}")
    return value


def _string(container: Mapping[str, Any], name: str, where: str) -> str:
    value = container.get(name)
    if not isinstance(value, str) or not value:
        raise EventSubPayloadError(
            f"{where}.{name} must be a non-empty string, got {_short(value)}"
        )
    return value


def _timestamp(value: Any, name: str, kind: str = "") -> datetime:
    prefix = f"{kind}: " if kind else ""
    if not isinstance(value, str):
        raise EventSubPayloadError(f"{prefix}{name} must be an RFC 3339 time, got {_short(value)}")
    try:
        return parse_ts(value)
    except (ValueError, OverflowError) as error:
        raise EventSubPayloadError(
            f"{prefix}{name} is not an RFC 3339 time (or not representable): {_short(value)}"
        ) from error


def _describe(error: ValidationError) -> str:
    problems = [
        f"{'.'.join(str(part) for part in problem['loc']) or 'event'}: {problem['msg']}"
        for problem in error.errors()
    ]
    return "; ".join(problems)


def _short(value: Any, limit: int = 60) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else f"{shown[: limit - 3]}..."
