"""A Twitch stream end to end, with no activity ever announced by Twitch.

The real twitch source (twitchio, EventSub WebSocket) reads the local Twitch double;
the real analytics consumer, the orchestrator's decision loop and the retro runner
share one real Redis. Twitch's ``stream.online`` names no activity, so the
orchestrator must make the opening decision itself, and the segments, rewards and
report follow from the ``activity_changed`` it publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from services.analytics.handler import GROUP as ANALYTICS_GROUP
from services.analytics.handler import MetricsHandler
from services.analytics.settings import AnalyticsSettings
from services.ingest.settings import IngestSettings
from services.ingest.sources.twitch import TwitchSource
from services.orchestrator.app import advisor_for, build_loop
from services.orchestrator.chat import TwitchChat
from services.orchestrator.settings import OrchestratorSettings
from shared.clock import utc_now
from shared.consumer import ConsumerRunner
from tests.ingest import twitch_state as tw
from tests.ingest.test_twitch_source import SUBSCRIBED_TYPES, buffered
from tests.ingest.twitch_double import TwitchDouble
from tests.ingest.twitch_payloads import example_event
from tests.ingest.twitch_state import rfc3339
from tests.orchestrator.anthropic_double import AnthropicDouble, anthropic_double, tool_use
from tests.retro.helpers import retro_settings, running, until

CHANNEL = tw.BROADCASTER_LOGIN
STREAM_ID = "40001"


@contextlib.asynccontextmanager
async def in_task(run: Callable[[asyncio.Event], Any]) -> AsyncIterator[None]:
    """``run(stop)`` in a task while inside; stopped and awaited on the way out."""
    stop = asyncio.Event()
    task = asyncio.create_task(run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


@pytest.fixture
async def claude() -> AsyncIterator[AnthropicDouble]:
    """Claude opens with music and greets chat, then keeps it (a switch to what is on air)."""
    async with anthropic_double() as running_:
        running_.default = tool_use(
            ("send_chat", {"message": "Music first, chat!"}),
            ("switch_activity", {"activity": "music", "reason": "warm up the room"}),
        )
        yield running_


@pytest.fixture
async def double() -> AsyncIterator[TwitchDouble]:
    async with TwitchDouble.running(keepalive_timeout_s=10, reconnect_grace_s=5.0) as running_:
        yield running_


def twitch_settings(double: TwitchDouble) -> dict[str, Any]:
    """The ``TWITCH_*`` settings pointing at the double (the same names in every service)."""
    return {
        "twitch_client_id": tw.CLIENT_ID,
        "twitch_client_secret": tw.CLIENT_SECRET,
        "twitch_bot_id": tw.BOT_ID,
        "twitch_broadcaster_id": tw.BROADCASTER_ID,
        "twitch_user_token": tw.USER_TOKEN,
        "twitch_refresh_token": tw.REFRESH_TOKEN,
        "twitch_api_url": double.api_url,
        "twitch_auth_url": double.auth_url,
    }


async def chat(double: TwitchDouble, text: str) -> None:
    """One chat message from a viewer, as Twitch delivers it."""
    event = example_event("channel.chat.message", message_id=str(uuid.uuid4()))
    fragment = dict(event["message"]["fragments"][0], text=text)
    event["message"] = {"text": text, "fragments": [fragment]}
    await double.notify("channel.chat.message", event)


# One end-to-end scenario, read top to bottom: a whole Twitch stream from first event to report.
async def test_a_twitch_stream_gets_decisions_from_its_first_interval_and_an_exact_report(
    redis: Redis,
    make_settings: Callable[..., Any],
    double: TwitchDouble,
    claude: AnthropicDouble,
    tmp_path: Path,
) -> None:
    ingest: IngestSettings = make_settings(
        IngestSettings,
        **twitch_settings(double),
        twitch_eventsub_ws_url=double.ws_url,
        twitch_viewer_poll_s=0.1,
        channels=CHANNEL,
    )
    analytics: AnalyticsSettings = make_settings(
        AnalyticsSettings, consumer_name="a1", consumer_block_ms=20
    )
    orchestrator: OrchestratorSettings = make_settings(
        OrchestratorSettings,
        **twitch_settings(double) | {"twitch_user_token": tw.BOT_TOKEN},
        anthropic_api_key="test-key",
        anthropic_base_url=claude.url,
        channels=CHANNEL,
        decision_interval_s=1.0,
        min_segment_s=0.5,
        reward_grace_s=0.2,
        loop_interval_s=0.05,
        replica_id="r1",
        bandit_state_path=str(tmp_path / "bandit.json"),
    )
    retro = retro_settings(make_settings, tmp_path, channels=CHANNEL, min_segment_s=0.5)
    source = TwitchSource(ingest, buffered(redis, ingest))
    metrics = ConsumerRunner(
        redis,
        analytics,
        ANALYTICS_GROUP,
        MetricsHandler(analytics.keys, analytics.state_ttl_s),
        partition=analytics.partitioning.of(CHANNEL),
    )
    advisor = advisor_for(orchestrator)
    voice = TwitchChat(orchestrator)
    loop = build_loop(redis, orchestrator, advisor, chat=voice)
    decisions = orchestrator.keys.decisions(CHANNEL)

    async with (
        in_task(source.run),
        in_task(metrics.run),
        in_task(loop.run),
        in_task(voice.run),
        running(redis, retro) as (retro_runner, _, _),
    ):
        await double.wait_for_subscribed_session(SUBSCRIBED_TYPES, timeout_s=5)
        double.set_live(STREAM_ID, viewers=25, started_at=utc_now())
        await double.notify(
            "stream.online", example_event("stream.online", id=STREAM_ID, started_at=rfc3339())
        )
        await chat(double, "first!")
        await until(lambda: redis.xlen(decisions), within=10)
        [(_, opening)] = await redis.xrange(decisions, count=1)
        assert (opening["action"], opening["previous"], opening["stream_id"]) == (
            "switch",
            "",
            STREAM_ID,
        )
        assert (opening["activity"], opening["decided_by"]) == ("music", "claude")
        # The first message lands within the stream's first (partial) second: it counts.
        for n in range(6):
            await chat(double, f"hello {n}")
            await asyncio.sleep(0.3)
        await until(lambda: _count_at_least(redis, decisions, 3), within=10)
        double.set_offline()
        await double.notify("stream.offline", example_event("stream.offline"))
        report_key = retro.keys.retro(CHANNEL, STREAM_ID)
        await until(lambda: redis.hget(report_key, "markdown"), within=15)
        assert retro_runner.summary.handled >= 2

    report = await redis.hgetall(report_key)
    markdown = report["markdown"]
    assert report["complete"] == "1", markdown
    assert "| chat messages | 7 |" in markdown, [x for x in markdown.splitlines() if "chat" in x]
    assert f"| `{opening['activity']}` |" in markdown, "the opening activity is a segment"
    await advisor.close()
    await voice.close()
    recorded = [fields for _, fields in await redis.xrange(decisions)]
    assert {fields["stream_id"] for fields in recorded} == {STREAM_ID}
    assert {fields["decided_by"] for fields in recorded} <= {"claude", "dwell"}
    said = [m["message"] for m in double.chat_messages]
    assert said and set(said) == {"Music first, chat!"}, "Claude's line reached Twitch chat"
    assert all(m["sender_id"] == tw.BOT_ID for m in double.chat_messages)


async def _count_at_least(redis: Redis, key: str, count: int) -> bool:
    return int(await redis.xlen(key)) >= count
