"""Hand-built event sequences with known figures, for analytics tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.events import (
    ActivityChangedEvent,
    BitsEvent,
    ChatEvent,
    DonationEvent,
    EventBase,
    FollowEvent,
    StreamStartedEvent,
    SubEvent,
    ViewerCountEvent,
)

START = datetime(2026, 2, 27, 10, 0, tzinfo=UTC)
STREAM = "s-known"


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def known_stream(channel: str = "demo") -> list[EventBase]:
    """Ten minutes of a stream whose every figure is worked out in the test."""
    c = {"channel": channel, "source": "sim"}
    events: list[EventBase] = [
        StreamStartedEvent(**c, id="start", ts=at(0), stream_id=STREAM),
        ActivityChangedEvent(
            **c,
            id="a1",
            ts=at(0),
            stream_id=STREAM,
            activity="talk",
            reason="stream start",
            decided_by="sim",
        ),
        ViewerCountEvent(**c, id="v1", ts=at(0), count=40),
        ViewerCountEvent(**c, id="v2", ts=at(300), count=50),
        DonationEvent(**c, id="d1", ts=at(100), user="alice", amount="10.00"),
        BitsEvent(**c, id="b1", ts=at(200), user="bob", bits=500),
        SubEvent(
            **c, id="g1", ts=at(250), type="gift", user="carol", tier="1000", count=3, amount="7.50"
        ),
        SubEvent(**c, id="s1", ts=at(560), type="sub", user="dave", tier="1000", amount="2.50"),
        FollowEvent(**c, id="f1", ts=at(30), stream_id=STREAM, user="erin"),
        ActivityChangedEvent(
            **c,
            id="a2",
            ts=at(300),
            stream_id=STREAM,
            activity="q_and_a",
            previous="talk",
            reason="chat asks",
            decided_by="bandit",
        ),
    ]
    # 30 chat messages in the last minute (t = 541..570 s), from 6 users; 10 earlier ones.
    events += [
        ChatEvent(**c, id=f"early{n}", ts=at(10 + n), user=f"early{n % 2}", text="hi")
        for n in range(10)
    ]
    events += [
        ChatEvent(**c, id=f"late{n}", ts=at(541 + n), user=f"user{n % 6}", text="yo")
        for n in range(30)
    ]
    events.append(ViewerCountEvent(**c, id="v3", ts=at(600), count=60))
    return events
