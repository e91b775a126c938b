"""A local test double of the Anthropic Messages API (``POST /v1/messages``), on a real port.

Each request is answered by the next scripted reply: a tool-use message, a plain
text message, an error status with Anthropic's error body, or a stall longer than
the client's timeout. Requests are recorded for assertions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
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


def error(status: int, kind: str) -> Reply:
    """An error answer in Anthropic's format."""
    return Reply(status=status, body={"type": "error", "error": {"type": kind, "message": kind}})


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


class AnthropicDouble:
    """Serves scripted replies; ``requests`` holds the JSON bodies received."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.requests: list[dict[str, Any]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(json.loads(await request.read()))
        reply = self.replies.pop(0) if self.replies else error(500, "api_error")
        if reply.stall_s:
            await asyncio.sleep(reply.stall_s)
        headers = {"retry-after": "0"} if reply.status == 429 else {}
        return web.json_response(reply.body, status=reply.status, headers=headers)


@contextlib.asynccontextmanager
async def anthropic_double() -> AsyncIterator[AnthropicDouble]:
    """Run the double on 127.0.0.1; ``double.url`` is its base URL."""
    double = AnthropicDouble()
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
