"""EventSub notifications map field by field onto the event models; bad payloads fail clearly."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from services.ingest.settings import IngestSettings
from services.ingest.sources.eventsub import (
    EventSubPayloadError,
    Ignored,
    LiveStreams,
    MapResult,
    Notification,
    map_notification,
)
from shared.events import (
    BitsEvent,
    ChatEvent,
    FollowEvent,
    RaidEvent,
    StreamEndedEvent,
    StreamStartedEvent,
    SubEvent,
)
from tests.ingest.twitch_payloads import example_event, webhook_body
from tests.ingest.twitch_state import BROADCASTER_LOGIN

MESSAGE_ID = "befa7b53-d79d-478f-86b9-120f112b044e"
SENT = "2022-11-16T10:11:12.464757833Z"
SENT_AT = datetime(2022, 11, 16, 10, 11, 12, 464757, tzinfo=UTC)
SETTINGS = IngestSettings(
    _env_file=None,
    channels=[BROADCASTER_LOGIN],
    sub_tier1_usd=Decimal("2.50"),
    sub_tier2_usd=Decimal("5.00"),
    sub_tier3_usd=Decimal("12.50"),
)


def notification(kind: str, event: dict[str, Any]) -> Notification:
    return Notification.from_payload(MESSAGE_ID, SENT, webhook_body(kind, event))


def mapped(kind: str, live: LiveStreams | None = None, **overrides: Any) -> MapResult:
    event = example_event(kind, **overrides)
    return map_notification(notification(kind, event), SETTINGS, live or LiveStreams())


def live_on(stream_id: str) -> LiveStreams:
    live = LiveStreams()
    live.observe(
        StreamStartedEvent(
            id=f"online:{stream_id}",
            channel=BROADCASTER_LOGIN,
            ts=SENT_AT,
            source="twitch",
            stream_id=stream_id,
        )
    )
    return live


def test_chat_message_maps_to_chat_event() -> None:
    event = mapped("channel.chat.message")
    assert event == ChatEvent(
        id="cc106a89-1814-919d-454c-f4f2f970aae7",
        channel=BROADCASTER_LOGIN,
        ts=SENT_AT,
        source="twitch",
        user="viewer32",
        text="Hi chat",
    )


def test_new_sub_maps_to_sub_with_tier_price() -> None:
    event = mapped("channel.subscribe", tier="3000")
    assert event == SubEvent(
        id=MESSAGE_ID,
        channel=BROADCASTER_LOGIN,
        ts=SENT_AT,
        source="twitch",
        type="sub",
        user="cool_user",
        tier="3000",
        months=1,
        count=1,
        amount=Decimal("12.50"),
    )


def test_gifted_sub_is_ignored_because_the_gift_counts_it() -> None:
    result = mapped("channel.subscribe", is_gift=True)
    assert isinstance(result, Ignored)
    assert "channel.subscription.gift" in result.reason


def test_resub_carries_cumulative_months() -> None:
    event = mapped("channel.subscription.message")
    assert event == SubEvent(
        id=MESSAGE_ID,
        channel=BROADCASTER_LOGIN,
        ts=SENT_AT,
        source="twitch",
        type="resub",
        user="cool_user",
        tier="2000",
        months=15,
        count=1,
        amount=Decimal("5.00"),
    )


def test_gift_counts_total_and_prices_every_sub() -> None:
    event = mapped("channel.subscription.gift", total=5)
    assert event == SubEvent(
        id=MESSAGE_ID,
        channel=BROADCASTER_LOGIN,
        ts=SENT_AT,
        source="twitch",
        type="gift",
        user="cool_user",
        tier="1000",
        count=5,
        amount=Decimal("12.50"),
    )


def test_anonymous_gift_is_from_anonymous() -> None:
    event = mapped(
        "channel.subscription.gift",
        is_anonymous=True,
        user_id=None,
        user_login=None,
        user_name=None,
        cumulative_total=None,
    )
    assert isinstance(event, SubEvent) and event.user == "anonymous" and event.count == 2


def test_cheer_maps_to_bits_at_one_cent_each() -> None:
    event = mapped("channel.cheer")
    assert event == BitsEvent(
        id=MESSAGE_ID,
        channel=BROADCASTER_LOGIN,
        ts=SENT_AT,
        source="twitch",
        user="cool_user",
        bits=1000,
        amount=Decimal("10.00"),
        message="pogchamp",
    )


def test_anonymous_cheer_is_from_anonymous() -> None:
    event = mapped("channel.cheer", is_anonymous=True, user_id=None, user_login=None)
    assert isinstance(event, BitsEvent) and event.user == "anonymous" and event.bits == 1000


def test_raid_is_led_by_the_raiding_channel_into_the_live_stream() -> None:
    event = mapped("channel.raid", live_on("40001"))
    assert event == RaidEvent(
        id=MESSAGE_ID,
        channel=BROADCASTER_LOGIN,
        ts=SENT_AT,
        source="twitch",
        stream_id="40001",
        user="cool_user",
        count=9001,
    )


def test_follow_uses_followed_at_and_the_live_stream() -> None:
    event = mapped("channel.follow", live_on("40001"))
    assert event == FollowEvent(
        id=MESSAGE_ID,
        channel=BROADCASTER_LOGIN,
        source="twitch",
        stream_id="40001",
        user="cool_user",
        ts=datetime(2020, 7, 15, 18, 16, 11, 171067, tzinfo=UTC),
    )


def test_lifecycle_events_while_no_stream_is_known_are_offline() -> None:
    follow = mapped("channel.follow")
    raid = mapped("channel.raid")
    assert isinstance(follow, FollowEvent) and follow.stream_id == "offline"
    assert isinstance(raid, RaidEvent) and raid.stream_id == "offline"


def test_stream_online_keys_on_the_stream_id_and_starts_tracking_it() -> None:
    live = LiveStreams()
    event = mapped("stream.online", live)
    assert event == StreamStartedEvent(
        id="online:9001",
        channel=BROADCASTER_LOGIN,
        source="twitch",
        stream_id="9001",
        ts=datetime(2020, 10, 11, 10, 11, 12, 123000, tzinfo=UTC),
    )
    assert isinstance(event, StreamStartedEvent)
    live.observe(event)
    assert live.current(BROADCASTER_LOGIN) == "9001"


def test_stream_offline_ends_the_tracked_stream() -> None:
    live = live_on("40001")
    event = mapped("stream.offline", live)
    assert event == StreamEndedEvent(
        id="offline:40001",
        channel=BROADCASTER_LOGIN,
        ts=SENT_AT,
        source="twitch",
        stream_id="40001",
    )
    assert isinstance(event, StreamEndedEvent)
    live.observe(event)
    assert live.current(BROADCASTER_LOGIN) is None
    assert live.has_ended(BROADCASTER_LOGIN, "40001")
    assert mapped("stream.offline", live) == event, "a late second offline keys on the same id"


def test_late_start_of_an_ended_stream_does_not_revive_it() -> None:
    live = live_on("40001")
    ended = mapped("stream.offline", live)
    assert isinstance(ended, StreamEndedEvent)
    live.observe(ended)
    late_start = mapped("stream.online", live, id="40001")
    assert isinstance(late_start, StreamStartedEvent)
    live.observe(late_start)
    assert live.current(BROADCASTER_LOGIN) is None


def test_stream_offline_of_an_unknown_stream_keys_on_the_message_id() -> None:
    event = mapped("stream.offline")
    assert isinstance(event, StreamEndedEvent)
    assert (event.id, event.stream_id) == (f"offline:{MESSAGE_ID}", "offline")


def test_websocket_message_reads_metadata_and_payload() -> None:
    body = webhook_body("channel.cheer", example_event("channel.cheer"))
    metadata = {"message_id": "m-1", "message_type": "notification", "message_timestamp": SENT}
    parsed = Notification.from_websocket({"metadata": metadata, "payload": body})
    assert (parsed.message_id, parsed.message_timestamp) == ("m-1", SENT_AT)
    assert (parsed.subscription_type, parsed.subscription_version) == ("channel.cheer", "1")
    assert parsed.event["bits"] == 1000


def test_unknown_subscription_type_is_ignored_not_an_error() -> None:
    unknown = notification("channel.ban", {"user_login": "someone"})
    result = map_notification(unknown, SETTINGS, LiveStreams())
    assert isinstance(result, Ignored) and "channel.ban" in result.reason


@pytest.mark.parametrize(
    ("kind", "overrides", "reason"),
    [
        (
            "channel.cheer",
            {"bits": "lots"},
            "channel.cheer: event.bits must be an integer, got 'lots'",
        ),
        ("channel.cheer", {"bits": True}, "event.bits must be an integer"),
        ("channel.cheer", {"bits": 0}, "bits: Input should be greater than or equal to 1"),
        ("channel.chat.message", {"message": None}, "event.message.text must be a string"),
        ("channel.chat.message", {"chatter_user_login": ""}, "event.chatter_user_login must be"),
        ("channel.subscribe", {"tier": "4000"}, "tier: Input should be '1000', '2000' or '3000'"),
        ("channel.subscribe", {"is_gift": "no"}, "event.is_gift must be true or false"),
        ("channel.follow", {"followed_at": "yesterday"}, "event.followed_at is not an RFC 3339"),
        ("channel.raid", {"viewers": -1}, "count: Input should be greater than or equal to 0"),
        ("stream.online", {"id": None}, "stream.online: event.id must be a non-empty string"),
        ("channel.raid", {"to_broadcaster_user_login": "no spaces"}, "channel: String should"),
    ],
)
def test_payload_that_does_not_fit_raises_a_readable_error(
    kind: str, overrides: dict[str, Any], reason: str
) -> None:
    with pytest.raises(EventSubPayloadError) as raised:
        mapped(kind, **overrides)
    assert reason in str(raised.value)


def test_missing_field_is_named_as_missing() -> None:
    event = example_event("channel.subscription.message")
    del event["cumulative_months"]
    with pytest.raises(
        EventSubPayloadError, match=r"event\.cumulative_months must be an integer, missing"
    ):
        map_notification(
            notification("channel.subscription.message", event), SETTINGS, LiveStreams()
        )


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (
            {"subscription": {"type": "channel.cheer", "version": "1"}},
            "event must be a JSON object",
        ),
        ({"event": {}}, "subscription must be a JSON object"),
        ({"subscription": {"version": "1"}, "event": {}}, "subscription.type must be a non-empty"),
    ],
)
def test_notification_without_its_envelope_raises(payload: dict[str, Any], reason: str) -> None:
    with pytest.raises(EventSubPayloadError, match=reason):
        Notification.from_payload(MESSAGE_ID, SENT, payload)


def test_bad_message_timestamp_raises() -> None:
    body = webhook_body("channel.cheer", example_event("channel.cheer"))
    with pytest.raises(EventSubPayloadError, match="message_timestamp is not an RFC 3339 time"):
        Notification.from_payload(MESSAGE_ID, "16/11/2022", body)
