"""Log lines a person can read (text) or a machine can parse (JSON, ``LOG_FORMAT=json``).

Every line names its service and, when known, its channel: set the channel for
the code that follows with :func:`channel_context`.

No secret reaches a line: uvicorn's lines carry request paths with their query
strings (``WebSocket /ws/metrics?token=...``), so every query string in a
``uvicorn.*`` line is replaced by ``?[redacted]``, and a ``token=``, ``secret=``,
``password=`` or ``key=`` value in any other line is masked too.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import sys
from collections.abc import Iterator

from pythonjsonlogger.json import JsonFormatter

_channel: contextvars.ContextVar[str] = contextvars.ContextVar("channel", default="-")

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(service)s [%(channel)s] %(name)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(service)s %(channel)s %(name)s %(message)s"


QUERY_STRING = re.compile(r"(/[^\s\"'?]*)\?[^\s\"']*")
"""A path's query string, as uvicorn writes it in its connection lines."""
SECRET_PARAMETER = re.compile(
    r"(?i)\b((?:access_)?token|secret|password|passwd|api_key|key|sig|signature)=[^&\s\"']+"
)
"""``name=value`` pairs whose value is a secret, wherever they appear."""


def redact(message: str, *, query_strings: bool) -> str:
    """``message`` with secret parameter values masked, and every query string if asked."""
    if query_strings:
        message = QUERY_STRING.sub(r"\1?[redacted]", message)
    return SECRET_PARAMETER.sub(r"\1=[redacted]", message)


class _RedactFilter(logging.Filter):
    """Masks secrets in each record's message before any formatter sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message, query_strings=record.name.startswith("uvicorn"))
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


class _ContextFilter(logging.Filter):
    """Stamps each record with the service name and the current channel."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.channel = getattr(record, "channel", None) or _channel.get()
        return True


def configure_logging(service: str, level: str = "INFO", fmt: str = "text") -> None:
    """Send every log line to stderr in ``fmt`` (``text`` or ``json``), tagged with ``service``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter(service))
    handler.addFilter(_RedactFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter(JSON_FIELDS, rename_fields={"levelname": "level"}))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "httpx", "httpcore", "websockets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextlib.contextmanager
def channel_context(channel: str) -> Iterator[None]:
    """Tag every log line written inside the block with ``channel``."""
    token = _channel.set(channel)
    try:
        yield
    finally:
        _channel.reset(token)
