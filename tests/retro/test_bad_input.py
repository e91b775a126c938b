"""Bad input still gives a report that says what is missing, and nothing crashes."""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from services.retro.handler import GROUP, RetroHandler
from services.retro.settings import RetroSettings
from shared.bandit import ThompsonBandit
from shared.consumer import Delivery
from shared.events import (
    ActivityChangedEvent,
    ChatEvent,
    DonationEvent,
    EventBase,
    StreamEndedEvent,
    StreamStartedEvent,
)
from shared.publisher import Publisher
from tests.analytics.streams import STREAM, at, known_stream
from tests.orchestrator.driver import apply
from tests.retro.helpers import hand, retro_settings, running, until

ALL_MISSING = [
    "no activity changes",
    "no viewer counts",
    "no chat",
    "no donations",
    "no bits",
    "no subs",
    "no follows",
    "no raids",
]


@pytest.fixture
def settings(make_settings: Any, tmp_path: Path) -> RetroSettings:
    return retro_settings(make_settings, tmp_path, retro_catchup_timeout_s=0.3)


def ended(
    stream_id: str, seconds: float, channel: str = "demo", id: str | None = None
) -> StreamEndedEvent:
    return StreamEndedEvent(
        channel=channel,
        source="sim",
        id=id or f"end-{stream_id}",
        ts=at(seconds),
        stream_id=stream_id,
    )


async def report(redis: Redis, settings: RetroSettings, channel: str, stream_id: str) -> Any:
    raw = await redis.hget(settings.keys.retro(channel, stream_id), "report")
    assert raw is not None, f"no report for {channel}/{stream_id}"
    return json.loads(raw)


async def updates(redis: Redis, settings: RetroSettings, channel: str = "demo") -> int:
    state = await ThompsonBandit(redis, settings.keys, channel, settings.activities).state()
    return sum(arm.updates for arm in state.values())


async def test_an_unknown_stream_gets_a_report_saying_so(
    redis: Redis, settings: RetroSettings
) -> None:
    events: list[EventBase] = [*known_stream(), ended("nope", 700)]
    await apply(redis, settings.keys, events)
    out = io.StringIO()
    await hand(redis, RetroHandler(redis, settings, out=out), [events[-1]])
    got = await report(redis, settings, "demo", "nope")
    assert (got["found"], got["complete"]) == (False, False)
    assert got["missing"] == ["no stream_started for stream nope", *ALL_MISSING]
    markdown = out.getvalue()
    assert markdown.startswith("# Stream retro: demo / nope\n")
    assert "Analytics has no record of this stream starting." in markdown
    assert "- no stream\\_started for stream nope" in markdown
    assert "0 of 0" not in markdown and "no segments to score" in markdown
    assert await redis.zrange(settings.keys.retro_index("demo"), 0, -1) == ["nope"]
    assert await updates(redis, settings) == 0
    # ... and the real stream, still live, was left alone.
    assert not await redis.exists(settings.keys.retro("demo", STREAM))


async def test_an_end_on_a_channel_never_seen_and_an_offline_stream_id(
    redis: Redis, settings: RetroSettings
) -> None:
    handler = RetroHandler(redis, settings, out=io.StringIO())
    await hand(redis, handler, [ended("offline", 10, channel="ghosts")])
    got = await report(redis, settings, "ghosts", "offline")
    # Analytics has no clock and no record of the end: both said, with the summary's gaps.
    assert got["missing"][:2] == [
        "analytics had not caught up to the stream's end (2026-02-27T10:00:10Z): "
        "it had no events for ghosts",
        "analytics had not applied this stream_ended event",
    ]
    assert got["missing"][2:] == ["no stream_started for stream offline", *ALL_MISSING]
    html = await redis.hget(settings.keys.retro("ghosts", "offline"), "html")
    assert "analytics has no record of this stream starting" in html


async def test_a_stream_with_no_events_but_its_start_and_end(
    redis: Redis, settings: RetroSettings
) -> None:
    c = {"channel": "demo", "source": "sim"}
    events = [StreamStartedEvent(**c, id="s", ts=at(0), stream_id="empty"), ended("empty", 60)]
    await apply(redis, settings.keys, events)
    out = io.StringIO()
    await hand(redis, RetroHandler(redis, settings, out=out), events)
    got = await report(redis, settings, "demo", "empty")
    assert (got["found"], got["complete"], got["missing"]) == (True, True, ALL_MISSING)
    assert got["summary"]["duration_s"] == 60.0 and got["segments"] == []
    markdown = out.getvalue()
    assert "## What is missing\n\n- no activity changes\n- no viewer counts\n" in markdown
    assert "No activity changes were recorded." in markdown
    assert "| chat messages | 0 |" in markdown and "| revenue | $0.00 |" in markdown


async def test_a_summary_with_missing_pieces_says_which(
    redis: Redis, settings: RetroSettings
) -> None:
    c = {"channel": "demo", "source": "sim"}
    events: list[EventBase] = [
        StreamStartedEvent(**c, id="s", ts=at(0), stream_id="thin"),
        ActivityChangedEvent(**c, id="a", ts=at(0), stream_id="thin", activity="talk"),
        DonationEvent(**c, id="d", ts=at(30), user="alice", amount="5.00"),
        ended("thin", 600),
    ]
    await apply(redis, settings.keys, events)
    await hand(redis, RetroHandler(redis, settings, out=io.StringIO()), events)
    got = await report(redis, settings, "demo", "thin")
    assert got["missing"] == [
        "no viewer counts",
        "no chat",
        "no bits",
        "no subs",
        "no follows",
        "no raids",
    ]
    assert got["complete"] and got["summary"]["revenue"]["total_usd"] == 5.0
    # Ten minutes of talk, no chat: engagement is measurable (zeros), so it is scored.
    assert got["segments_scored"] == 1 and await updates(redis, settings) == 1


async def test_analytics_behind_gives_an_incomplete_report_and_no_bandit_update(
    redis: Redis, settings: RetroSettings
) -> None:
    events = [*known_stream(), ended(STREAM, 900)]
    # Analytics has the stream up to 600 s but never applied the end.
    await apply(redis, settings.keys, events[:-1])
    handler = RetroHandler(redis, settings, out=io.StringIO())
    await hand(redis, handler, [events[-1]])
    got = await report(redis, settings, "demo", STREAM)
    assert got["complete"] is False
    assert got["missing"][:2] == [
        "analytics had not caught up to the stream's end (2026-02-27T10:15:00Z): "
        "it had events up to 2026-02-27T10:10:00Z for demo",
        "analytics had not applied this stream_ended event",
    ]
    # The figures are what analytics had (the stream still looks live there) ...
    assert got["summary"]["is_live"] is True and got["summary"]["chat_messages"] == 40
    # ... and the bandit was not fed segments measured on partial figures.
    assert handler.scored == 0 and await updates(redis, settings) == 0
    html = await redis.hget(settings.keys.retro("demo", STREAM), "html")
    assert '<span class="badge incomplete">incomplete</span>' in html


async def test_retro_waits_for_analytics_to_catch_up(redis: Redis, settings: RetroSettings) -> None:
    slow = settings.model_copy(update={"retro_catchup_timeout_s": 10.0})
    events = [*known_stream(), ended(STREAM, 900)]
    await apply(redis, settings.keys, events[:-1])
    handler = RetroHandler(redis, slow, out=io.StringIO())

    async def analytics_catches_up() -> None:
        await asyncio.sleep(0.5)
        assert handler.reports == [], "retro waited"
        await apply(redis, settings.keys, events[-1:])  # analytics applies the end, late

    await asyncio.gather(hand(redis, handler, events[-1:]), analytics_catches_up())
    got = await report(redis, settings, "demo", STREAM)
    assert got["complete"] is True and got["missing"] == ["no raids"]
    assert handler.scored == 2  # talk 0-300 s and q_and_a 300-900 s


async def test_hostile_text_is_escaped_in_both_renderings(
    redis: Redis, settings: RetroSettings
) -> None:
    c = {"channel": "demo", "source": "sim"}
    evil = "<img src=x onerror=alert(1)>|**x**"
    events: list[EventBase] = [
        StreamStartedEvent(**c, id="s", ts=at(0), stream_id="x"),
        ActivityChangedEvent(
            **c, id="a", ts=at(0), stream_id="x", activity="talk", reason="</td><b>reason</b>"
        ),
        ChatEvent(**c, id="c", ts=at(5), user=evil, text="hi"),
        DonationEvent(
            **c,
            id="d",
            ts=at(6),
            user=evil,
            amount="1.00",
            message="</script><script>window.__pwned = 1</script>",
        ),
        ended("x", 120),
    ]
    await apply(redis, settings.keys, events)
    await hand(redis, RetroHandler(redis, settings, out=io.StringIO()), events)
    stored = await redis.hgetall(settings.keys.retro("demo", "x"))
    html, markdown = stored["html"], stored["markdown"]
    assert "<img" not in html and "window.__pwned = 1</script>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;|**x**" in html
    assert "&lt;/script&gt;&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
    assert "&lt;/td&gt;&lt;b&gt;reason&lt;/b&gt;" in html
    assert "<img" not in markdown and "<script" not in markdown
    assert "| 1 | &lt;img src=x onerror=alert(1)&gt;\\|\\*\\*x\\*\\* | 1 |" in markdown


async def test_the_runner_never_dead_letters_bad_input(
    redis: Redis, settings: RetroSettings
) -> None:
    """Through the real runner: odd ends, ends without starts, a missing channel."""
    events: list[EventBase] = [
        ended("nope", 10),
        ended("offline", 20, channel="other"),
        StreamStartedEvent(channel="demo", source="sim", id="s2", ts=at(30), stream_id="short"),
        ended("short", 30),  # ends the instant it starts
        ended("short", 31, id="end-short-again"),  # and again, from another source
    ]
    await Publisher(redis, settings).publish_many(events)
    async with running(redis, settings) as (runner, handler, out):
        await until(lambda: runner.summary.handled == len(events))
    assert runner.summary.dead_lettered == 0
    assert sorted(handler.reports) == ["demo/nope", "demo/short", "demo/short", "other/offline"]
    assert out.getvalue().count("# Stream retro") == 3
    assert (await redis.xpending(settings.keys.channel_stream("lifecycle", "demo"), GROUP))[
        "pending"
    ] == 0
    assert await redis.zrange(settings.keys.retro_index("demo"), 0, -1) == ["nope", "short"]


async def test_an_old_stream_ended_from_history_is_reported_but_not_scored(
    redis: Redis, settings: RetroSettings
) -> None:
    """A retro group created on an old lifecycle stream reads ends published long ago."""
    events = [*known_stream(), ended(STREAM, 900)]
    await apply(redis, settings.keys, events)
    handler = RetroHandler(redis, settings, out=io.StringIO())
    month_ago = f"{(time.time_ns() // 1_000_000) - 31 * 86_400_000}-0"
    async with redis.pipeline(transaction=True) as tx:
        await handler.handle([Delivery(events[-1].stream, month_ago, events[-1])], tx)
        await tx.execute()
    got = await report(redis, settings, "demo", STREAM)
    assert got["complete"] is True and got["segments_scored"] == 0
    assert got["notes"][-1].startswith("This stream_ended was published 31 days before")
    assert handler.scored == 0 and await updates(redis, settings) == 0
