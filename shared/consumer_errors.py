"""What the consumer runner makes of errors: which are transient, which stop it.

Kept apart from :mod:`shared.consumer` so the runner reads as its loop.
"""

from __future__ import annotations

from redis.exceptions import NoScriptError, ResponseError

from shared.redis_client import CONNECTION_ERRORS

PIPELINE_ERROR_MARK = "of pipeline caused error: "
"""What redis-py writes before the server's reply in the error of a pipelined command."""


class ScriptMissing(ConnectionError):
    """A node answered NOSCRIPT: transient, so the runner backs off and reads its
    pending entries again, as after a lost connection (a ``ConnectionError``)."""


class ConsumerGroupMissing(RuntimeError):
    """The consumer group vanished while running (stream deleted or Redis lost its data)."""


def is_transient(error: Exception) -> bool:
    """Errors that say nothing about the batch, so never count towards dead-lettering it.

    Redis unreachable (failover errors included), the group gone (the runner stops),
    or ``NOSCRIPT``: a promoted replica knows no scripts (Redis does not replicate the
    script cache). The runner backs off and reads its pending entries again; a script
    called directly reloads itself, and one queued through ``queue_script`` is sent
    as EVAL on a cluster, so the retry finds it.
    """
    return isinstance(error, CONNECTION_ERRORS) or is_nogroup(error) or is_noscript(error)


def is_noscript(error: Exception) -> bool:
    """NOSCRIPT, whether redis-py raised it as such or inside a pipeline's error."""
    return isinstance(error, NoScriptError) or "No matching script" in str(error)


def is_nogroup(error: Exception) -> bool:
    """NOGROUP, whether a command sent alone or one in a pipeline met it (redis-py then
    prefixes the reply with ``Command # N (...) of pipeline caused error:``)."""
    return isinstance(error, ResponseError) and server_reply(error).startswith("NOGROUP")


def server_reply(error: ResponseError) -> str:
    """The server's error reply, without the prefix redis-py adds to a pipeline's errors."""
    text = str(error)
    _, annotated, reply = text.partition(PIPELINE_ERROR_MARK)
    return reply if annotated else text


def group_missing(error: ResponseError, group: str) -> ConsumerGroupMissing:
    return ConsumerGroupMissing(
        f"consumer group {group!r} is gone ({error}): a stream was deleted or Redis lost its "
        "data; restart the service to recreate the group from the start of each stream"
    )
