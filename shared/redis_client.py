"""Opening connections to Redis the same way in every service."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.settings import BaseServiceSettings

CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    OSError,
)
"""Errors that mean "Redis is unreachable right now": back off and retry."""


def connect(url: str, *, socket_timeout_s: float = 10.0) -> Redis:
    """An async client for ``url`` (``redis://`` or ``rediss://``, password allowed).

    Responses are decoded to ``str``; bytes that are not UTF-8 become U+FFFD rather than
    an exception, so a hostile entry is dead-lettered instead of stopping a consumer.
    Commands retry briefly on connection errors.
    """
    return Redis.from_url(
        url,
        decode_responses=True,
        encoding_errors="replace",
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=5.0,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


def connect_settings(settings: BaseServiceSettings) -> Redis:
    """An async client for the service's ``REDIS_URL``."""
    return connect(settings.redis_url.get_secret_value())


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, safe to log."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))
