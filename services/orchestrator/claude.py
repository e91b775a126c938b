"""Asking Claude what the stream should do next, through the anthropic SDK with tool use.

Claude gets the stream's context (``context.py``) and answers with tool calls:
``switch_activity(activity, reason)`` or ``keep_activity(reason)``, optionally
with ``send_chat(message)``. The request follows today's Messages API for every
model we support: ``tool_choice`` is ``auto`` with clear instructions (models
that think by default, such as Sonnet 5.5, answer a forced tool choice with 400),
no sampling parameters, no assistant prefill, and ``cache_control`` on the
static prefix (tools, then system).

Anything else yields no advice plus the reason, and the caller falls back to the
bandit: no key, a timeout, a 429/5xx after the SDK's retries, a refusal
(``stop_reason: "refusal"``), a plain-text answer, an unknown activity. A 4xx
that will repeat (401, 403, 404 unknown model, 400 invalid request) pauses Claude
for ``ANTHROPIC_CONFIG_BACKOFF_S`` (doubling while it keeps failing) instead of
being sent again every interval; the log and ``/healthz`` name the setting to fix.
The loop never waits on the model longer than ``ANTHROPIC_TIMEOUT_S`` x
(``ANTHROPIC_MAX_RETRIES`` + 1).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

import anthropic
import httpx2

from services.orchestrator.claude_usage import REQUESTS, Usage, profile

log = logging.getLogger("services.orchestrator.claude")

SYSTEM_PROMPT = (
    "You direct the live Twitch stream of an AI streamer. Every little while you see how the "
    "audience is doing and decide what the stream does next. A Thompson-sampling bandit that "
    "learns from past segments suggests an activity; each activity's track record is given as "
    "a posterior mean reward with its uncertainty (reward 0..1, 0.5 is average). Follow the "
    "bandit unless the figures give you a clear reason not to, and say that reason.\n"
    "Answer only with tool calls, never with text: call exactly one of switch_activity or "
    "keep_activity (keep_activity only when something is on air), and optionally send_chat "
    "with one short, friendly line for chat in the streamer's voice. Do not repeat a line you "
    "sent before."
)
MAX_CHAT_CHARS = 300
MAX_REASON_CHARS = 500
MAX_CONFIG_BACKOFF_S = 3600.0
REPEATING_4XX = {
    400: "ANTHROPIC_MODEL (the model refuses this request shape; use a supported model)",
    401: "ANTHROPIC_API_KEY (the key is not valid)",
    403: "ANTHROPIC_API_KEY or ANTHROPIC_MODEL (the key may not use this model)",
    404: "ANTHROPIC_MODEL (no such model) or ANTHROPIC_BASE_URL",
}
"""HTTP statuses that will answer the same way until a setting changes, and which one."""


@dataclass(frozen=True)
class Advice:
    """Claude's decision: keep or switch, with its reason and an optional chat line."""

    action: Literal["switch", "keep"]
    activity: str
    reason: str
    chat_message: str = ""


@dataclass(frozen=True)
class Consultation:
    """One ask: the advice (or why there is none) and what the call cost, if one was made."""

    advice: Advice | None
    why_not: str = ""
    usage: Usage | None = None


def tools(activities: list[str]) -> list[dict[str, Any]]:
    """The tool definitions offered to Claude (the last one carries the cache breakpoint)."""
    reason = {"type": "string", "description": "One sentence: why, from the figures."}
    return [
        {
            "name": "switch_activity",
            "description": "Change what the stream is doing now (also: choose the first one).",
            "input_schema": {
                "type": "object",
                "required": ["activity", "reason"],
                "properties": {
                    "activity": {"type": "string", "enum": activities},
                    "reason": reason,
                },
                "additionalProperties": False,
            },
        },
        {
            "name": "keep_activity",
            "description": "Keep the current activity on air.",
            "input_schema": {
                "type": "object",
                "required": ["reason"],
                "properties": {"reason": reason},
                "additionalProperties": False,
            },
        },
        {
            "name": "send_chat",
            "description": "Post one short line in the Twitch chat as the streamer.",
            "input_schema": {
                "type": "object",
                "required": ["message"],
                "properties": {
                    "message": {
                        "type": "string",
                        "description": f"At most {MAX_CHAT_CHARS} characters, no links.",
                    }
                },
                "additionalProperties": False,
            },
        },
    ]


def request_body(
    model: str, activities: list[str], context: str, max_tokens: int
) -> dict[str, Any]:
    """The Messages API request: auto tool choice, cached static prefix, one user turn."""
    return {
        "model": model,
        "max_tokens": max_tokens,
        "system": [{"type": "text", "text": SYSTEM_PROMPT, "cache_control": {"type": "ephemeral"}}],
        "tools": tools(activities),
        "tool_choice": {"type": "auto"},
        "messages": [{"role": "user", "content": context}],
    }


def parse_advice(content: list[Any], activities: list[str], current: str) -> Advice | str:
    """The advice in a response's content blocks, or why there is none."""
    calls = [block for block in content if getattr(block, "type", "") == "tool_use"]
    chat = next((str(c.input.get("message", "")) for c in calls if c.name == "send_chat"), "")
    chat = " ".join(chat.split())[:MAX_CHAT_CHARS]
    for call in calls:
        reason = str(call.input.get("reason", ""))[:MAX_REASON_CHARS]
        if call.name == "keep_activity":
            if not current:
                return "Claude kept an activity, but nothing is on air yet"
            return Advice("keep", current, reason, chat)
        if call.name == "switch_activity":
            activity = str(call.input.get("activity", ""))
            if activity not in activities:
                return f"Claude chose unknown activity {activity!r}"
            return Advice("switch", activity, reason, chat)
    return "Claude answered without a switch_activity or keep_activity call"


class ClaudeAdvisor:
    """``AsyncAnthropic`` with the streamloop tools; no advice means "use the bandit"."""

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        activities: list[str],
        timeout_s: float,
        max_retries: int,
        base_url: str = "",
        config_backoff_s: float = 300.0,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        self.model = model
        self.activities = activities
        self.enabled = bool(api_key)
        self.config_backoff_s = config_backoff_s
        self.paused_until = 0.0
        self.pause_why = ""
        self._next_backoff_s = config_backoff_s
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

    def why_not_now(self) -> str | None:
        """Why Claude cannot be asked now (no key, or paused after a 4xx that would repeat),
        or None when it can: the decider then skips building a context nobody reads."""
        if self.client is None:
            return "no ANTHROPIC_API_KEY"
        if time.monotonic() < self.paused_until:
            REQUESTS.labels("paused").inc()
            return f"Claude paused: {self.pause_why}"
        return None

    async def advise(self, context: str, current: str) -> Consultation:
        """Claude's advice for ``context``, or no advice and why not."""
        if (why_not := self.why_not_now()) is not None or self.client is None:
            return Consultation(None, why_not or "no ANTHROPIC_API_KEY")
        started = time.monotonic()
        body = request_body(self.model, self.activities, context, profile(self.model).max_tokens)
        try:
            response = await self.client.messages.create(**body)
        except anthropic.APIStatusError as error:
            return self._failed(error)
        except anthropic.APIError as error:
            REQUESTS.labels("error").inc()
            return Consultation(None, f"Claude call failed: {describe(error)}")
        self._resume()
        usage = Usage.of(self.model, response.usage, time.monotonic() - started)
        usage.record()
        if response.stop_reason == "refusal":
            REQUESTS.labels("refusal").inc()
            log.warning("Claude declined to answer (stop_reason refusal); the bandit decides")
            return Consultation(None, "Claude declined (stop_reason refusal)", usage)
        advice = parse_advice(list(response.content), self.activities, current)
        if isinstance(advice, str):
            REQUESTS.labels("unusable").inc()
            return Consultation(None, advice, usage)
        REQUESTS.labels("advice").inc()
        return Consultation(advice, "", usage)

    def health(self) -> dict[str, str]:
        """What ``/healthz`` says of Claude: off, on, or paused and which setting to fix."""
        if self.client is None:
            return {"status": "off", "detail": "no ANTHROPIC_API_KEY: the bandit decides alone"}
        if time.monotonic() < self.paused_until:
            left = self.paused_until - time.monotonic()
            return {"status": "paused", "detail": f"{self.pause_why}; next try in {left:.0f} s"}
        return {"status": "on", "model": self.model}

    def _failed(self, error: anthropic.APIStatusError) -> Consultation:
        setting = REPEATING_4XX.get(error.status_code)
        if setting is None:
            REQUESTS.labels("error").inc()
            return Consultation(None, f"Claude call failed: {describe(error)}")
        REQUESTS.labels("config_error").inc()
        backoff = self._next_backoff_s
        self.paused_until = time.monotonic() + backoff
        self._next_backoff_s = min(backoff * 2, MAX_CONFIG_BACKOFF_S)
        self.pause_why = (
            f"{describe(error)} for model {self.model!r}: fix {setting} "
            f"({api_message(error)}); the bandit decides meanwhile"
        )
        log.error("Claude paused for %.0f s: %s", backoff, self.pause_why)
        return Consultation(None, f"Claude call failed: {self.pause_why}")

    def _resume(self) -> None:
        if self.pause_why:
            log.info("Claude answers again; no longer paused")
        self.pause_why = ""
        self._next_backoff_s = self.config_backoff_s

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


def api_message(error: anthropic.APIStatusError) -> str:
    """The API's own error message (type: message), cut to one short line."""
    body = error.body if isinstance(error.body, dict) else {}
    detail = body.get("error", {}) if isinstance(body.get("error"), dict) else {}
    text = f"{detail.get('type', 'error')}: {detail.get('message', '')}"
    return " ".join(text.split())[:200]
