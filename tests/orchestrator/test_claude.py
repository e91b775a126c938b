"""Claude through the real anthropic SDK against a local double of the Messages API."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from services.orchestrator.claude import Advice, ClaudeAdvisor
from tests.orchestrator.anthropic_double import (
    AnthropicDouble,
    Reply,
    anthropic_double,
    error,
    text,
    tool_use,
)

ACTIVITIES = ["talk", "q_and_a", "gameplay", "react", "music"]
CONTEXT = (
    "Stream state: 42 viewers, chat velocity 12.5 msg/min, engagement 65.3/100, "
    "revenue $25/hr. Bandit suggests: q_and_a. Current activity: talk."
)


@pytest.fixture
async def double() -> AsyncIterator[AnthropicDouble]:
    async with anthropic_double() as running:
        yield running


def advisor(double: AnthropicDouble, *, timeout_s: float = 2.0, retries: int = 1) -> ClaudeAdvisor:
    return ClaudeAdvisor(
        api_key="test-key",
        model="claude-test",
        activities=ACTIVITIES,
        timeout_s=timeout_s,
        max_retries=retries,
        base_url=double.url,
    )


async def test_a_switch_tool_call_becomes_advice_and_the_request_carries_tools_and_context(
    double: AnthropicDouble,
) -> None:
    double.replies = [
        tool_use(
            ("send_chat", {"message": "Questions time!"}),
            ("switch_activity", {"activity": "q_and_a", "reason": "chat asks"}),
        )
    ]
    claude = advisor(double)
    advice, why_not = await claude.advise(CONTEXT, "talk")
    await claude.close()
    assert advice == Advice("switch", "q_and_a", "chat asks", "Questions time!") and not why_not
    [request] = double.requests
    assert request["model"] == "claude-test" and request["tool_choice"] == {"type": "any"}
    assert {tool["name"] for tool in request["tools"]} == {
        "switch_activity",
        "keep_activity",
        "send_chat",
    }
    assert request["messages"] == [{"role": "user", "content": CONTEXT}]


async def test_keep_tool_call_keeps_the_current_activity(double: AnthropicDouble) -> None:
    double.replies = [tool_use(("keep_activity", {"reason": "going well"}))]
    claude = advisor(double)
    advice, _ = await claude.advise(CONTEXT, "talk")
    await claude.close()
    assert advice == Advice("keep", "talk", "going well")


@pytest.mark.parametrize(
    ("replies", "says"),
    [
        ([text("I think you should do Q&A.")], "without a switch_activity or keep_activity"),
        (
            [tool_use(("switch_activity", {"activity": "juggling", "reason": "fun"}))],
            "unknown activity 'juggling'",
        ),
        ([error(429, "rate_limit_error"), error(429, "rate_limit_error")], "HTTP 429"),
        ([error(500, "api_error"), error(500, "api_error")], "HTTP 500"),
    ],
    ids=["plain-text", "unknown-activity", "429", "500"],
)
async def test_unusable_answers_give_no_advice_and_say_why(
    double: AnthropicDouble, replies: list[Reply], says: str
) -> None:
    double.replies = list(replies)
    claude = advisor(double, retries=1)
    advice, why_not = await claude.advise(CONTEXT, "talk")
    await claude.close()
    assert advice is None and says in why_not


async def test_errors_are_retried_within_the_bound(double: AnthropicDouble) -> None:
    double.replies = [error(500, "api_error"), tool_use(("keep_activity", {"reason": "ok"}))]
    claude = advisor(double, retries=1)
    advice, _ = await claude.advise(CONTEXT, "talk")
    await claude.close()
    assert advice is not None and len(double.requests) == 2


async def test_a_stalled_api_times_out_within_the_bound(double: AnthropicDouble) -> None:
    double.replies = [Reply(stall_s=5), Reply(stall_s=5)]
    claude = advisor(double, timeout_s=0.3, retries=1)
    started = time.monotonic()
    advice, why_not = await claude.advise(CONTEXT, "talk")
    elapsed = time.monotonic() - started
    await claude.close()
    assert advice is None and "timed out" in why_not
    assert elapsed < 4, "the loop must not wait on the model beyond timeout x attempts"


async def test_without_a_key_no_call_is_made() -> None:
    claude = ClaudeAdvisor(api_key="", model="m", activities=ACTIVITIES, timeout_s=1, max_retries=0)
    assert await claude.advise(CONTEXT, "talk") == (None, "no ANTHROPIC_API_KEY")
