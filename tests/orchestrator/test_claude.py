"""Claude through the real anthropic SDK against a local double of the Messages API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from services.orchestrator.app import create_app
from services.orchestrator.claude import Advice, ClaudeAdvisor, request_body
from services.orchestrator.claude_usage import MODELS
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.state import OrchestratorState
from shared.app_state import state_of
from tests.orchestrator.anthropic_double import (
    AnthropicDouble,
    Reply,
    anthropic_double,
    error,
    refusal,
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


def advisor(
    double: AnthropicDouble,
    *,
    timeout_s: float = 2.0,
    retries: int = 1,
    model: str = "claude-haiku-5-5",
) -> ClaudeAdvisor:
    return ClaudeAdvisor(
        api_key="test-key",
        model=model,
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
    asked = await claude.advise(CONTEXT, "talk")
    await claude.close()
    assert asked.advice == Advice("switch", "q_and_a", "chat asks", "Questions time!")
    assert not asked.why_not
    [request] = double.requests
    assert request["model"] == "claude-haiku-5-5" and request["tool_choice"] == {"type": "auto"}
    assert {tool["name"] for tool in request["tools"]} == {
        "switch_activity",
        "keep_activity",
        "send_chat",
    }
    assert request["messages"] == [{"role": "user", "content": CONTEXT}]


async def test_keep_tool_call_keeps_the_current_activity(double: AnthropicDouble) -> None:
    double.replies = [tool_use(("keep_activity", {"reason": "going well"}))]
    claude = advisor(double)
    asked = await claude.advise(CONTEXT, "talk")
    await claude.close()
    assert asked.advice == Advice("keep", "talk", "going well")


@pytest.mark.parametrize(
    ("replies", "says"),
    [
        ([text("I think you should do Q&A.")], "without a switch_activity or keep_activity"),
        ([refusal()], "declined (stop_reason refusal)"),
        (
            [tool_use(("switch_activity", {"activity": "juggling", "reason": "fun"}))],
            "unknown activity 'juggling'",
        ),
        ([error(429, "rate_limit_error"), error(429, "rate_limit_error")], "HTTP 429"),
        ([error(500, "api_error"), error(500, "api_error")], "HTTP 500"),
    ],
    ids=["plain-text", "refusal", "unknown-activity", "429", "500"],
)
async def test_unusable_answers_give_no_advice_and_say_why(
    double: AnthropicDouble, replies: list[Reply], says: str
) -> None:
    double.replies = list(replies)
    claude = advisor(double, retries=1)
    asked = await claude.advise(CONTEXT, "talk")
    await claude.close()
    assert asked.advice is None and says in asked.why_not


async def test_errors_are_retried_within_the_bound(double: AnthropicDouble) -> None:
    double.replies = [error(500, "api_error"), tool_use(("keep_activity", {"reason": "ok"}))]
    claude = advisor(double, retries=1)
    asked = await claude.advise(CONTEXT, "talk")
    await claude.close()
    assert asked.advice is not None and len(double.requests) == 2


async def test_a_stalled_api_times_out_within_the_bound(double: AnthropicDouble) -> None:
    double.replies = [Reply(stall_s=5), Reply(stall_s=5)]
    claude = advisor(double, timeout_s=0.3, retries=1)
    started = time.monotonic()
    asked = await claude.advise(CONTEXT, "talk")
    elapsed = time.monotonic() - started
    await claude.close()
    assert asked.advice is None and "timed out" in asked.why_not
    assert elapsed < 4, "the loop must not wait on the model beyond timeout x attempts"


async def test_without_a_key_no_call_is_made() -> None:
    claude = ClaudeAdvisor(api_key="", model="m", activities=ACTIVITIES, timeout_s=1, max_retries=0)
    asked = await claude.advise(CONTEXT, "talk")
    assert (asked.advice, asked.why_not) == (None, "no ANTHROPIC_API_KEY")


# ---- today's API rules ------------------------------------------------------------------


@pytest.mark.parametrize("model", sorted(MODELS))
async def test_every_supported_model_accepts_the_request_and_answers_with_advice(
    double: AnthropicDouble, model: str
) -> None:
    """Sonnet and Opus 5.5 think by default: a forced tool choice would be a 400 there."""
    double.replies = [tool_use(("keep_activity", {"reason": "fine"}))]
    claude = advisor(double, model=model)
    asked = await claude.advise(CONTEXT, "talk")
    await claude.close()
    assert asked.advice == Advice("keep", "talk", "fine"), asked.why_not
    [request] = double.requests
    assert not {"temperature", "top_p", "top_k", "thinking"} & set(request)
    assert request["messages"][-1]["role"] == "user", "no assistant prefill"
    assert request["system"][-1]["cache_control"] == {"type": "ephemeral"}


@pytest.mark.parametrize(
    ("model", "change", "says"),
    [
        ("claude-sonnet-5-5", {"tool_choice": {"type": "any"}}, "tool_choice forces"),
        ("claude-opus-5-5", {"tool_choice": {"type": "tool", "name": "keep_activity"}}, "forces"),
        (
            "claude-haiku-5-5",
            {"tool_choice": {"type": "any"}, "thinking": {"type": "adaptive"}},
            "forces",
        ),
        ("claude-haiku-5-5", {"temperature": 0.2}, "temperature not supported"),
        ("claude-sonnet-5-5", {"thinking": {"type": "disabled"}}, "cannot be disabled"),
        (
            "claude-haiku-5-5",
            {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "{"}]},
            "prefill",
        ),
    ],
    ids=[
        "forced-any-sonnet",
        "forced-tool-opus",
        "forced-thinking-haiku",
        "sampling",
        "thinking-off-sonnet",
        "prefill",
    ],
)
async def test_the_double_refuses_what_the_real_api_refuses(
    double: AnthropicDouble, model: str, change: dict[str, object], says: str
) -> None:
    double.replies = [tool_use(("keep_activity", {"reason": "never served"}))]
    body = request_body(model, ACTIVITIES, CONTEXT, 600) | change
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{double.url}/v1/messages", json=body)
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert says in answer.json()["error"]["message"]
    async with httpx.AsyncClient() as client:
        fixed = await client.post(
            f"{double.url}/v1/messages", json=request_body(model, ACTIVITIES, CONTEXT, 600)
        )
    assert fixed.status_code == 200, "the same request without the change is accepted"


async def test_an_unknown_model_pauses_claude_and_health_names_the_setting(
    double: AnthropicDouble,
) -> None:
    claude = advisor(double, model="claude-sonnet-9")
    first = await claude.advise(CONTEXT, "talk")
    assert first.advice is None and "HTTP 404" in first.why_not
    assert "ANTHROPIC_MODEL" in first.why_not and "claude-sonnet-9" in first.why_not
    for _ in range(5):
        again = await claude.advise(CONTEXT, "talk")
        assert again.advice is None and again.why_not.startswith("Claude paused")
    await claude.close()
    assert len(double.requests) == 1, "a 404 that will repeat is not sent every interval"
    health = claude.health()
    assert health["status"] == "paused" and "ANTHROPIC_MODEL" in health["detail"]


async def test_a_paused_claude_tries_again_after_the_backoff_and_resumes(
    double: AnthropicDouble,
) -> None:
    double.replies = [
        error(400, "invalid_request_error", "credit balance too low"),
        tool_use(("keep_activity", {"reason": "back"})),
    ]
    claude = ClaudeAdvisor(
        api_key="k",
        model="claude-haiku-5-5",
        activities=ACTIVITIES,
        timeout_s=2,
        max_retries=0,
        base_url=double.url,
        config_backoff_s=0.2,
    )
    first = await claude.advise(CONTEXT, "talk")
    assert first.advice is None and "credit balance too low" in first.why_not
    assert (await claude.advise(CONTEXT, "talk")).why_not.startswith("Claude paused")
    await asyncio.sleep(0.25)
    resumed = await claude.advise(CONTEXT, "talk")
    await claude.close()
    assert resumed.advice == Advice("keep", "talk", "back")
    assert claude.health() == {"status": "on", "model": "claude-haiku-5-5"}
    assert len(double.requests) == 2


async def test_usage_and_cost_of_an_answered_call_are_measured(double: AnthropicDouble) -> None:
    double.replies = [tool_use(("keep_activity", {"reason": "ok"}))]
    claude = advisor(double, model="claude-sonnet-5-5")
    asked = await claude.advise(CONTEXT, "talk")
    await claude.close()
    usage = asked.usage
    assert usage is not None and usage.output_tokens > 0
    assert usage.input_tokens + usage.cache_write_tokens > 300, "tools + system + context"
    price = MODELS["claude-sonnet-5-5"]
    expected = (
        price.input_usd_per_mtok * (usage.input_tokens + 1.25 * usage.cache_write_tokens)
        + price.output_usd_per_mtok * usage.output_tokens
    ) / 1e6
    assert usage.cost_usd == pytest.approx(expected)
    assert usage.fields()["tokens_in"] == str(usage.input_tokens)


async def test_healthz_names_the_setting_to_fix_while_claude_is_paused(
    double: AnthropicDouble, make_settings, tmp_path
) -> None:
    settings = make_settings(
        OrchestratorSettings,
        anthropic_api_key="k",
        anthropic_model="claude-sonnet-9",
        anthropic_base_url=double.url,
        bandit_state_path=str(tmp_path / "bandit.json"),
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await state_of(app, OrchestratorState).advisor.advise(CONTEXT, "talk")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            answer = await client.get("/healthz")
    assert answer.status_code == 200, "the bandit still decides"
    claude = answer.json()["claude"]
    assert claude["status"] == "paused" and "fix ANTHROPIC_MODEL" in claude["detail"]
    assert answer.json()["twitch_chat"]["status"] == "off"
