"""The streams the read-model tests publish, and how they publish them.

``extended_stream`` is also the recorded stream of the retro tests; every figure the
tests check is worked out by hand from it.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from services.analytics.settings import AnalyticsSettings
from shared.events import (
    ActivityChangedEvent,
    BitsEvent,
    ChatEvent,
    DonationEvent,
    EventBase,
    FollowEvent,
    RaidEvent,
    StreamEndedEvent,
    StreamStartedEvent,
    SubEvent,
    ViewerCountEvent,
)
from shared.publisher import Publisher
from tests.analytics.streams import START, STREAM, at, known_stream
from tests.analytics.test_metrics import consume_all

START_MS = round(START.timestamp() * 1000)
TWO = "s-two"


def ms(seconds: float) -> int:
    """Epoch ms of ``seconds`` after START."""
    return START_MS + round(seconds * 1000)


# Long by design: the event list is the fixture; its docstring is the timeline it encodes.
def extended_stream(channel: str = "demo") -> list[EventBase]:
    """The known stream, then gaming, talk again, an end at 900 s, and a second stream.

    Lifecycle of s-known: preshow at -30 (before the start: outside), start 0,
    talk 0, q_and_a 300, gaming 600, talk 780, end 900, afterparty 920 (after the
    end: outside). Then s-two starts at 1200 with talk and is still live; the
    channel clock ends at 1260 (the last viewer sample).
    """
    c: dict[str, Any] = {"channel": channel, "source": "sim"}
    change = {**c, "stream_id": STREAM}
    events: list[EventBase] = [
        *known_stream(channel),
        ViewerCountEvent(**c, id="x-v0", ts=at(-60), count=7),
        ActivityChangedEvent(**change, id="x-a0", ts=at(-30), activity="preshow"),
        ActivityChangedEvent(
            **change,
            id="x-a3",
            ts=at(600),
            activity="gaming",
            previous="q_and_a",
            reason="energy dip",
            decided_by="bandit",
        ),
        FollowEvent(**change, id="x-f2", ts=at(640), user="frank"),
        RaidEvent(**change, id="x-r1", ts=at(650), user="raider", count=25),
        ViewerCountEvent(**c, id="x-v4", ts=at(660), count=90),
        DonationEvent(**c, id="x-d2", ts=at(700), user="zed", amount="20.00", message="gg"),
        BitsEvent(**c, id="x-b2", ts=at(710), user="bob", bits=100),
        ActivityChangedEvent(
            **change,
            id="x-a4",
            ts=at(780),
            activity="talk",
            previous="gaming",
            reason="wind down",
            decided_by="bandit",
        ),
        SubEvent(
            **c,
            id="x-s2",
            ts=at(790),
            type="resub",
            user="erin",
            tier="1000",
            months=3,
            amount="2.50",
        ),
        StreamEndedEvent(**change, id="x-end", ts=at(900)),
        # After the end of s-known and before s-two: in neither.
        ChatEvent(**c, id="x-ghost", ts=at(905), user="ghost", text="bye"),
        DonationEvent(**c, id="x-d3", ts=at(910), user="ghost", amount="50.00"),
        ActivityChangedEvent(**change, id="x-a5", ts=at(920), activity="afterparty"),
        ViewerCountEvent(**c, id="x-v5", ts=at(930), count=5),
        FollowEvent(**change, id="x-f3", ts=at(950), user="late"),
        # s-two, live.
        StreamStartedEvent(**c, id="y-start", ts=at(1200), stream_id=TWO),
        ActivityChangedEvent(
            **c,
            id="y-a1",
            ts=at(1200),
            stream_id=TWO,
            activity="talk",
            reason="stream start",
            decided_by="sim",
        ),
        ViewerCountEvent(**c, id="y-v1", ts=at(1200), count=10),
        ChatEvent(**c, id="y-c1", ts=at(1210), user="newbie", text="first"),
        ViewerCountEvent(**c, id="y-v2", ts=at(1260), count=12),
    ]
    # gaming: 12 messages at 620..631 s, user0 and gamer alternately (6 each).
    events += [
        ChatEvent(
            **c, id=f"x-g{n}", ts=at(620 + n), user="user0" if n % 2 == 0 else "gamer", text="gg"
        )
        for n in range(12)
    ]
    # second talk: 4 messages at 800..803 s from late_talker.
    events += [
        ChatEvent(**c, id=f"x-t{n}", ts=at(800 + n), user="late_talker", text="so")
        for n in range(4)
    ]
    return events


async def publish(
    redis: Redis, settings: AnalyticsSettings, events: list[EventBase], batch: int = 1000
) -> None:
    """Publish ``events`` in batches of ``batch``, in the order given, and consume them all."""
    publisher = Publisher(redis, settings)
    for first in range(0, len(events), batch):
        await publisher.publish_many(events[first : first + batch])
    await consume_all(redis, settings, len(events))


async def publish_stream_around(
    redis: Redis, settings: AnalyticsSettings, channel: str, seconds: int
) -> None:
    """A start at 0 and an end at ``seconds`` on ``channel``."""
    c: dict[str, Any] = {"channel": channel, "source": "sim", "stream_id": "busy-1"}
    events: list[EventBase] = [
        StreamStartedEvent(**c, id="busy-start", ts=at(0)),
        StreamEndedEvent(**c, id="busy-end", ts=at(seconds)),
    ]
    await Publisher(redis, settings).publish_many(events)
    await consume_all(redis, settings, len(events))
