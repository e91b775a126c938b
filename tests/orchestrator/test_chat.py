"""The streamer's chat line through Helix Send Chat Message, against the Twitch double."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from services.orchestrator.chat import TwitchChat
from services.orchestrator.settings import OrchestratorSettings
from tests.ingest import twitch_state as tw
from tests.ingest.twitch_double import TwitchDouble

CHANNEL = tw.BROADCASTER_LOGIN


@pytest.fixture
async def double() -> AsyncIterator[TwitchDouble]:
    async with TwitchDouble.running() as running:
        yield running


def chat_settings(
    make_settings: Callable[..., Any], double: TwitchDouble, **overrides: Any
) -> OrchestratorSettings:
    values: dict[str, Any] = {
        "twitch_client_id": tw.CLIENT_ID,
        "twitch_client_secret": tw.CLIENT_SECRET,
        "twitch_bot_id": tw.BOT_ID,
        "twitch_broadcaster_id": tw.BROADCASTER_ID,
        "twitch_user_token": tw.BOT_TOKEN,
        "twitch_api_url": double.api_url,
        "twitch_auth_url": double.auth_url,
        "twitch_chat_interval_s": 0.0,
    }
    settings: OrchestratorSettings = make_settings(OrchestratorSettings, **(values | overrides))
    return settings


@contextlib.asynccontextmanager
async def worker(chat: TwitchChat) -> AsyncIterator[TwitchChat]:
    stop = asyncio.Event()
    task = asyncio.create_task(chat.run(stop))
    try:
        yield chat
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await chat.close()


async def until(check: Callable[[], Any], within_s: float = 5.0) -> None:
    async with asyncio.timeout(within_s):
        while not check():
            await asyncio.sleep(0.01)


async def test_a_line_reaches_the_channel_as_the_bot(make_settings, double: TwitchDouble) -> None:
    chat = TwitchChat(chat_settings(make_settings, double))
    async with worker(chat):
        chat.offer(CHANNEL, "Questions   time,\nchat!")
        chat.offer("someone_else", "not for this channel")
        await until(lambda: double.chat_messages)
        await asyncio.sleep(0.1)
    assert double.chat_messages == [
        {
            "broadcaster_id": tw.BROADCASTER_ID,
            "sender_id": tw.BOT_ID,
            "message": "Questions time, chat!",
        }
    ]
    assert chat.sent == 1
    assert chat.health() == {"status": "on", "sent": 1, "queued": 0}


async def test_without_twitch_settings_nothing_is_queued(make_settings) -> None:
    chat = TwitchChat(make_settings(OrchestratorSettings))
    chat.offer(CHANNEL, "hello")
    assert not chat.enabled and not chat.queue
    await chat.close()


async def test_offering_never_waits_and_the_oldest_line_drops_when_full(
    make_settings, double: TwitchDouble
) -> None:
    chat = TwitchChat(chat_settings(make_settings, double, twitch_chat_queue_max=3))
    started = time.monotonic()
    for n in range(5):
        chat.offer(CHANNEL, f"line {n}")
    assert time.monotonic() - started < 0.05
    assert [line for _, line in chat.queue] == ["line 2", "line 3", "line 4"]
    async with worker(chat):
        await until(lambda: len(double.chat_messages) == 3)
    assert [m["message"] for m in double.chat_messages] == ["line 2", "line 3", "line 4"]


async def test_a_token_without_the_chat_scope_fails_and_says_which_scope(
    make_settings, double: TwitchDouble, caplog: pytest.LogCaptureFixture
) -> None:
    chat = TwitchChat(chat_settings(make_settings, double, twitch_user_token=tw.USER_TOKEN))
    with pytest.raises(Exception, match="user:write:chat"):
        await chat.send("hi")
    caplog.set_level(logging.ERROR, "services.orchestrator.chat")
    async with worker(chat):
        chat.offer(CHANNEL, "hi")
        await until(lambda: "user:write:chat" in caplog.text)
    assert not double.chat_messages
    health = chat.health()
    assert health["status"] == "on" and "Missing scope" in str(health["last_failure"])


async def test_a_dropped_line_is_reported_as_dropped(make_settings, double: TwitchDouble) -> None:
    double.chat_drop_next = {"code": "msg_duplicate", "message": "duplicate message"}
    chat = TwitchChat(chat_settings(make_settings, double))
    assert await chat.send("same again") == "dropped"
    assert await chat.send("new line") == "sent"
    await chat.close()


async def test_over_twitchs_rate_limit_it_waits_for_the_reset_and_sends(
    make_settings, double: TwitchDouble
) -> None:
    # 20 messages in the last 30 s, the oldest 29.5 s ago: reset in about 1.5 s.
    now = time.time()
    double.chat_sent_at = [now - 29.5 + n * 0.01 for n in range(tw.CHAT_LIMIT)]
    chat = TwitchChat(chat_settings(make_settings, double))
    assert await chat.send("after the limit") == "sent"
    await chat.close()
    assert [m["message"] for m in double.chat_messages] == ["after the limit"]
    assert time.time() - now >= 0.4, "it waited for Ratelimit-Reset"


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"twitch_bot_id": tw.BROADCASTER_ID}, "sender_id must match"),
        ({"twitch_user_token": "nosuchtoken0000000000000000000"}, "Invalid OAuth token"),
    ],
    ids=["sender-not-token-user", "bad-token"],
)
async def test_helix_errors_are_failures_that_say_what_to_fix(
    make_settings, double: TwitchDouble, change: dict[str, str], says: str
) -> None:
    chat = TwitchChat(chat_settings(make_settings, double, **change))
    with pytest.raises(Exception, match=says) as failed:
        await chat.send("hi")
    await chat.close()
    assert "TWITCH_USER_TOKEN" in str(failed.value)


async def test_an_expired_token_is_refreshed_once_and_the_line_goes_out(
    make_settings, double: TwitchDouble
) -> None:
    expired = "expiredtoken00000000000000000"
    chat = TwitchChat(
        chat_settings(
            make_settings,
            double,
            twitch_user_token=expired,
            twitch_refresh_token=tw.BOT_REFRESH_TOKEN,
        )
    )
    assert await chat.send("still here") == "sent"
    assert await chat.send("and again") == "sent"
    await chat.close()
    assert double.refreshes == 1 and chat.token != expired
    assert [m["message"] for m in double.chat_messages] == ["still here", "and again"]
