"""Documented EventSub example payloads and webhook bodies and signed headers built from them,
for the mapping and webhook tests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from typing import Any

from tests.ingest.twitch_state import (
    BROADCASTER_ID,
    BROADCASTER_LOGIN,
    rfc3339,
)

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
