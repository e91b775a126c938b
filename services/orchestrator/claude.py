"""Asking Claude what the stream should do next, through the anthropic SDK with tool use.

Claude gets the stream's figures and the bandit's suggestion and must answer with
a tool call: ``switch_activity(activity, reason)`` or ``keep_activity(reason)``,
optionally with ``send_chat(message)``. Anything else (no key, an error, a
timeout, a plain-text answer, an unknown activity) yields ``None`` plus the
reason, and the caller falls back to the bandit: the loop never waits on the
model longer than ``ANTHROPIC_TIMEOUT_S`` x (``ANTHROPIC_MAX_RETRIES`` + 1).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import anthropic
import httpx2

log = logging.getLogger("services.orchestrator.claude")

SYSTEM_PROMPT = (
    "You direct the live Twitch stream of an AI streamer. Every little while you see how the "
    "audience is doing and decide what the stream does next. A Thompson-sampling bandit that "
    "learns from past results suggests an activity; follow it unless the figures give you a "
    "clear reason not to. Answer only with tool calls: exactly one of switch_activity or "
    "keep_activity, and optionally send_chat with one short, friendly line for chat."
)


@dataclass(frozen=True)
class Advice:
    """Claude's decision: keep or switch, with its reason and an optional chat line."""

    action: Literal["switch", "keep"]
    activity: str
    reason: str
    chat_message: str = ""


def tools(activities: list[str]) -> list[dict[str, Any]]:
    """The tool definitions offered to Claude."""
    reason = {"type": "string", "description": "One sentence: why, from the figures."}
    return [
        {
            "name": "switch_activity",
            "description": "Change what the stream is doing now.",
            "input_schema": {
                "type": "object",
                "required": ["activity", "reason"],
                "properties": {
                    "activity": {"type": "string", "enum": activities},
                    "reason": reason,
                },
            },
        },
        {
            "name": "keep_activity",
            "description": "Keep the current activity on air.",
            "input_schema": {
                "type": "object",
                "required": ["reason"],
                "properties": {"reason": reason},
            },
        },
        {
            "name": "send_chat",
            "description": "Post one short line in chat as the streamer.",
            "input_schema": {
                "type": "object",
                "required": ["message"],
                "properties": {"message": {"type": "string", "maxLength": 300}},
            },
        },
    ]


def parse_advice(content: list[Any], activities: list[str], current: str) -> Advice | str:
    """The advice in a response's content blocks, or why there is none."""
    calls = [block for block in content if getattr(block, "type", "") == "tool_use"]
    chat = next((str(c.input.get("message", "")) for c in calls if c.name == "send_chat"), "")
    for call in calls:
        reason = str(call.input.get("reason", ""))[:500]
        if call.name == "keep_activity":
            if not current:
                return "Claude kept an activity, but nothing is on air yet"
            return Advice("keep", current, reason, chat[:300])
        if call.name == "switch_activity":
            activity = str(call.input.get("activity", ""))
            if activity not in activities:
                return f"Claude chose unknown activity {activity!r}"
            return Advice("switch", activity, reason, chat[:300])
    return "Claude answered without a switch_activity or keep_activity call"


class ClaudeAdvisor:
    """``AsyncAnthropic`` with the streamloop tools; ``None`` advice means "use the bandit"."""

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        activities: list[str],
        timeout_s: float,
        max_retries: int,
        base_url: str = "",
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        self.model = model
        self.activities = activities
        self.enabled = bool(api_key)
        self.client = (
            anthropic.AsyncAnthropic(
                api_key=api_key or "unset",
                base_url=base_url or None,
                timeout=timeout_s,
                max_retries=max_retries,
                http_client=http_client,
            )
            if api_key
            else None
        )

    async def advise(self, context: str, current: str) -> tuple[Advice | None, str]:
        """Claude's advice for ``context``, or ``(None, why not)``."""
        if self.client is None:
            return None, "no ANTHROPIC_API_KEY"
        try:
            response = await self.client.messages.create(  # type: ignore[call-overload]
                model=self.model,
                max_tokens=400,
                system=SYSTEM_PROMPT,
                tools=tools(self.activities),
                tool_choice={"type": "any"},
                messages=[{"role": "user", "content": context}],
            )
        except anthropic.APIError as error:
            return None, f"Claude call failed: {describe(error)}"
        advice = parse_advice(list(response.content), self.activities, current)
        return (advice, "") if isinstance(advice, Advice) else (None, advice)

    async def close(self) -> None:
        """Close the HTTP client."""
        if self.client is not None:
            await self.client.close()


def describe(error: anthropic.APIError) -> str:
    """One line for logs and decision records."""
    if isinstance(error, anthropic.APITimeoutError):
        return "timed out"
    if isinstance(error, anthropic.APIStatusError):
        return f"HTTP {error.status_code} {type(error).__name__}"
    return type(error).__name__
