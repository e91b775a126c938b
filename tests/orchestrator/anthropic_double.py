"""A local test double of the Anthropic Messages API (``POST /v1/messages``), on a real port.

Before any scripted reply, a request is checked against the rules today's API
enforces (../shared/reference/claude-api-2026.md, from Anthropic's models overview,
migration guides and tool-use docs), so a client regression fails a test:

* an unknown model id: 404 ``not_found_error``;
* on the 5.x models: sampling parameters (``temperature``, ``top_p``, ``top_k``) and
  an assistant-turn prefill: 400 ``invalid_request_error``;
* a forced tool choice (``any`` / ``tool``) while thinking is on (Sonnet 5.5 and Opus
  5.5 think by default; others when the request turns it on): 400;
* ``thinking: {"type": "disabled"}`` on Sonnet 5.5: 400.

A valid request is answered by the next scripted reply (a tool-use message, plain
text, a refusal, an error status with Anthropic's error body, or a stall), after
``latency_s`` when set (a number, or a function drawing one per request).
``usage`` is counted roughly (about 3.5 characters a token) with prompt caching:
a ``cache_control`` prefix at least the model's minimum is written once, then
read while it lives (5 minutes). Requests are recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from shared.redis_server import free_port


@dataclass
class Reply:
    """One scripted answer."""

    status: int = 200
    body: dict[str, Any] = field(default_factory=dict)
    stall_s: float = 0.0


def tool_use(*calls: tuple[str, dict[str, Any]]) -> Reply:
    """A 200 answer whose content is the given tool calls."""
    content = [
        {"type": "tool_use", "id": f"toolu_{n}", "name": name, "input": args}
        for n, (name, args) in enumerate(calls)
    ]
    return Reply(body=message(content, "tool_use"))


def text(answer: str) -> Reply:
    """A 200 answer with plain text only."""
    return Reply(body=message([{"type": "text", "text": answer}], "end_turn"))


def error(status: int, kind: str, text: str = "") -> Reply:
    """An error answer in Anthropic's format."""
    body = {"type": "error", "error": {"type": kind, "message": text or kind}}
    return Reply(status=status, body=body | {"request_id": "req_double"})


def refusal() -> Reply:
    """A 200 answer that declines: ``stop_reason: "refusal"``, no content."""
    return Reply(body=message([], "refusal"))


def message(content: list[dict[str, Any]], stop_reason: str) -> dict[str, Any]:
    return {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 120, "output_tokens": 40},
    }


@dataclass(frozen=True)
class ModelRules:
    """What the API accepts from one model."""

    thinks_by_default: bool
    five_x: bool
    min_cache_tokens: int
    can_disable_thinking: bool = True


MODELS: dict[str, ModelRules] = {
    "claude-haiku-5-5": ModelRules(False, True, 4096),
    "claude-sonnet-5-5": ModelRules(True, True, 512, can_disable_thinking=False),
    "claude-opus-5-5": ModelRules(True, True, 4096),
    "claude-sonnet-5": ModelRules(False, True, 1024),
    "claude-opus-5": ModelRules(False, True, 1024),
    "claude-haiku-4-5-20251001": ModelRules(False, False, 4096),
}
SAMPLING = ("temperature", "top_p", "top_k")
CACHE_TTL_S = 300.0
CHARS_PER_TOKEN = 3.5


def broken_rule(body: dict[str, Any]) -> Reply | None:
    """The error the real API answers ``body`` with, or None when it is acceptable."""
    model = body.get("model")
    rules = MODELS.get(str(model))
    if rules is None:
        return error(404, "not_found_error", f"model: {model}")
    if not isinstance(body.get("max_tokens"), int) or not body.get("messages"):
        return error(400, "invalid_request_error", "max_tokens and messages are required")
    thinking = body.get("thinking") or {}
    if thinking.get("type") == "disabled" and not rules.can_disable_thinking:
        return error(400, "invalid_request_error", f"thinking cannot be disabled on {model}")
    if rules.five_x and (sent := [p for p in SAMPLING if p in body]):
        return error(400, "invalid_request_error", f"{', '.join(sent)} not supported on {model}")
    if rules.five_x and body["messages"][-1].get("role") == "assistant":
        return error(400, "invalid_request_error", f"assistant prefill not supported on {model}")
    thinks = thinking.get("type") in ("enabled", "adaptive") or (
        rules.thinks_by_default and thinking.get("type") != "disabled"
    )
    forced = (body.get("tool_choice") or {}).get("type") in ("any", "tool")
    if thinks and forced:
        return error(
            400,
            "invalid_request_error",
            "Thinking may not be enabled when tool_choice forces tool use.",
        )
    return None


def tokens(value: Any) -> int:
    """A rough token count of a JSON value (the real count is the model's tokenizer's)."""
    return max(1, round(len(json.dumps(value)) / CHARS_PER_TOKEN)) if value else 0


class AnthropicDouble:
    """Serves scripted replies to valid requests; ``requests`` holds every JSON body."""

    def __init__(self, latency_s: float | Callable[[], float] = 0.0) -> None:
        self.replies: list[Reply] = []
        self.requests: list[dict[str, Any]] = []
        self.url = ""
        self.latency_s = latency_s
        self.default: Reply | None = None
        self._cache: dict[str, float] = {}

    async def handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        self.requests.append(body)
        delay = self.latency_s() if callable(self.latency_s) else self.latency_s
        if delay:
            await asyncio.sleep(delay)
        reply = broken_rule(body)
        if reply is None:
            reply = self.replies.pop(0) if self.replies else self.default or error(500, "api_error")
        if reply.stall_s:
            await asyncio.sleep(reply.stall_s)
        answer = reply.body
        if reply.status == 200:
            answer = answer | {"model": body["model"], "usage": self.usage(body, reply.body)}
        headers = {"retry-after": "0"} if reply.status == 429 else {}
        return web.json_response(answer, status=reply.status, headers=headers)

    def usage(self, body: dict[str, Any], answer: dict[str, Any]) -> dict[str, int]:
        """Input (uncached), cache write/read and output token counts of one answer."""
        prefix = tokens(body.get("tools")) + tokens(body.get("system"))
        rest = tokens(body.get("messages"))
        cached = "cache_control" in json.dumps([body.get("tools"), body.get("system")])
        rules = MODELS[body["model"]]
        written = read = 0
        if cached and prefix >= rules.min_cache_tokens:
            key = json.dumps([body["model"], body.get("tools"), body.get("system")])
            now = time.monotonic()
            if self._cache.get(key, 0.0) > now:
                read = prefix
            else:
                written = prefix
            self._cache[key] = now + CACHE_TTL_S
        uncached = prefix + rest - written - read
        return {
            "input_tokens": uncached,
            "cache_creation_input_tokens": written,
            "cache_read_input_tokens": read,
            "output_tokens": tokens(answer.get("content")),
        }


@contextlib.asynccontextmanager
async def anthropic_double(
    latency_s: float | Callable[[], float] = 0.0,
) -> AsyncIterator[AnthropicDouble]:
    """Run the double on 127.0.0.1; ``double.url`` is its base URL."""
    double = AnthropicDouble(latency_s)
    app = web.Application()
    app.router.add_post("/v1/messages", double.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    double.url = f"http://127.0.0.1:{port}"
    try:
        yield double
    finally:
        await runner.cleanup()
