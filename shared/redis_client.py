"""Opening connections to Redis the same way in every service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import (
    AskError,
    AuthenticationError,
    ClusterError,
    ReadOnlyError,
    RedisClusterUnreachableError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.settings import BaseServiceSettings

CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    OSError,
    ClusterError,
    AskError,
    TryAgainError,
    SlotNotCoveredError,
    RedisClusterUnreachableError,
    ReadOnlyError,
)
"""Errors that mean "Redis is unreachable right now": back off and retry.

Every worker's retry loop (and ``/healthz``) catches exactly these, so a failover
costs a pause, never a dead worker or a good entry counted as a handler failure.

redis-py's ``AuthenticationError`` (wrong or missing password) is a ``ConnectionError``
too, so it is caught here as well: the error's text says which it is. The rest is
what a failover answers, on a cluster or a single server:

* ``ClusterError``: ``CLUSTERDOWN`` from every node until a replica is promoted
  (``ClusterDownError``, and ``MASTERDOWN``, its subclass), and redis-py's own
  "TTL exhausted" once a command was redirected 16 times while the slots move;
* ``AskError``: a ``MOVED`` / ``ASK`` redirection left over once redis-py's retries
  ran out (a transaction retries redirections only five times);
* ``TryAgainError``: ``TRYAGAIN`` during a resharding;
* ``SlotNotCoveredError`` / ``RedisClusterUnreachableError``: redis-py found no node
  for a slot, or none at all, after its retries;
* ``ReadOnlyError``: a write reached a master just turned replica (a single server
  behind a failover-managed address);
* :class:`RoleChanged` (a ``ConnectionError``): a blocking read cut short because its
  server turned replica (``UNBLOCKED``), as in a manual ``CLUSTER FAILOVER`` or when
  a failed master comes back; the clients :func:`connect` and :func:`connect_cluster`
  return raise it.

The cluster errors are ``ResponseError``s or plain exceptions, so without this a
consumer would count a failover as a handler failure and dead-letter good entries,
and a blocking reader would die and take its service's health down with it."""


class RoleChanged(RedisConnectionError):
    """The server answered a blocking command with ``UNBLOCKED``: it changed role (a
    master turned replica in a failover) or an operator unblocked the client.

    Nothing is wrong with the command: sent again, it reaches the current master (a
    cluster client follows the ``MOVED`` it then gets). A ``ConnectionError``, like
    redis-py's ``BusyLoadingError`` for ``LOADING``, so every retry loop rides it out.
    """


def is_unblocked(error: ResponseError) -> bool:
    """Whether ``error`` is the server's ``UNBLOCKED`` reply to a blocking command."""
    return str(error).startswith("UNBLOCKED")


class StreamloopRedis(Redis):
    """redis-py's client, raising :class:`RoleChanged` for an ``UNBLOCKED`` reply."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        """Run one command (see :class:`RoleChanged`)."""
        try:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        except ResponseError as error:
            if not is_unblocked(error):
                raise
            raise RoleChanged(str(error)) from error


class StreamloopRedisCluster(RedisCluster):
    """redis-py's cluster client, raising :class:`RoleChanged` for an ``UNBLOCKED`` reply."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        """Run one command (see :class:`RoleChanged`)."""
        try:
            return await super().execute_command(*args, **kwargs)
        except ResponseError as error:
            if not is_unblocked(error):
                raise
            raise RoleChanged(str(error)) from error


T = TypeVar("T")


class NetworkRetry(Retry):
    """:class:`Retry` that gives up at once on an authentication error.

    redis-py makes ``AuthenticationError`` a ``ConnectionError``, so a plain policy
    reconnects and re-sends a wrong or missing password with backoff (16 connections
    and 3.5 s for one command without a password). A refused password is not
    transient: retrying only delays the error and floods the server's log.
    """

    async def call_with_retry(
        self,
        do: Callable[[], Awaitable[T]],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        def retryable(error: Exception) -> bool:
            if isinstance(error, AuthenticationError):
                return False
            return is_retryable is None or is_retryable(error)

        return await super().call_with_retry(do, fail, retryable, with_failure_count)


def connect(url: str, *, socket_timeout_s: float = 10.0, max_connections: int = 500) -> Redis:
    """An async client for ``url`` (``redis://`` or ``rediss://``, password allowed).

    Responses are decoded to ``str``; bytes that are not UTF-8 become U+FFFD rather than
    an exception, so a hostile entry is dead-lettered instead of stopping a consumer.
    Commands retry briefly on connection errors, never on a refused password. TLS
    options go in the URL's query (``?ssl_ca_certs=/ca.pem&ssl_cert_reqs=required``)
    and reach the connection unchanged.
    """
    return StreamloopRedis.from_url(
        url,
        **_client_options(socket_timeout_s),
        max_connections=max_connections,
        retry=NetworkRetry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


def _client_options(socket_timeout_s: float) -> dict[str, Any]:
    """What every client shares: ``str`` replies (U+FFFD for bad bytes) and its timeouts."""
    return {
        "decode_responses": True,
        "encoding_errors": "replace",
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": 5.0,
        "health_check_interval": 15,
    }


def connect_cluster(
    url: str, *, socket_timeout_s: float = 10.0, max_connections: int = 500
) -> RedisCluster:
    """An async Redis Cluster client; ``url`` names any node (it finds the others).

    Same decoding, timeouts and TLS/password handling as :func:`connect` (the URL's
    password and ``?ssl_...`` options go to every node). The retry policy covers
    what a cluster adds: a command that meets a dead master, ``CLUSTERDOWN`` or a
    timeout is retried after a backoff with a topology refresh in between, a
    ``MOVED`` / ``ASK`` redirection is followed at once, and every
    ``reinitialize_steps`` MOVED replies the whole slot map is read again. A failover
    longer than the retries (production's ``cluster-node-timeout`` is 15 s) surfaces
    as one of :data:`CONNECTION_ERRORS`, which every worker already backs off on.
    """
    return StreamloopRedisCluster.from_url(
        url,
        **_client_options(socket_timeout_s),
        max_connections=max_connections,
        retry=NetworkRetry(ExponentialBackoff(cap=1.0, base=0.05), retries=5),
        reinitialize_steps=5,
    )


def connect_settings(settings: BaseServiceSettings) -> Redis:
    """An async client for the service's ``REDIS_URL``: a cluster client when ``REDIS_CLUSTER``.

    Its pool holds up to ``REDIS_MAX_CONNECTIONS`` (per node on a cluster): every
    partition's blocking reader holds one while it waits.

    The cluster client is returned under the :class:`Redis` type every service is
    written against: it answers the same commands, pipelines (``transaction=True``
    on one slot, WATCH included) and scripts (keys of one slot), as the tests in
    ``tests/cluster`` check on a real cluster. docs/cluster.md plans the
    ``Redis | RedisCluster`` type once the services use the partitioned key layout.
    """
    url, limit = settings.redis_url.get_secret_value(), settings.redis_max_connections
    if settings.redis_cluster:
        return cast(Redis, connect_cluster(url, max_connections=limit))
    return connect(url, max_connections=limit)


async def queue_script(
    tx: Pipeline | ClusterPipeline, script: AsyncScript | str, keys: list[str], args: list[str]
) -> None:
    """Queue ``script`` (registered, or its text) on the transaction ``tx`` so that it
    cannot fail for a missing script.

    Inside MULTI, Redis runs every queued command even when one of them fails, and
    ``EVALSHA`` of a script the node does not know fails only at EXEC (``NOSCRIPT``):
    the runner's XACKs would then commit without the effects. A plain
    :class:`~redis.asyncio.client.Pipeline` loads its registered scripts before MULTI,
    but redis-py's ``ClusterPipeline`` queues a bare ``EVALSHA``, and a promoted replica
    knows no scripts (Redis does not replicate the script cache). So the script is
    queued as ``EVAL`` with its text unless ``tx`` loads it first: one round trip
    still, and it cannot meet NOSCRIPT.
    """
    if isinstance(tx, Pipeline) and not isinstance(script, str):
        await script(keys=keys, args=args, client=tx)
        return
    text = script if isinstance(script, str) else script.script
    tx.eval(text if isinstance(text, str) else bytes(text).decode(), len(keys), *keys, *args)


def redact_url(url: str) -> str:
    """``url`` with every password replaced by ``***``, safe to log.

    redis-py reads a password from the user info (``rediss://user:pw@host``) and
    from any query parameter it does not know, such as ``?password=pw`` (and
    ``ssl_password``, the key file's): all of them are hidden.
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password:
        netloc = netloc.replace(f":{parts.password}@", ":***@")
    query = "&".join(_redact_param(pair) for pair in parts.query.split("&"))
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _redact_param(pair: str) -> str:
    """One ``name=value`` of a query, its value hidden when the (decoded) name is a password's."""
    name, equals, _ = pair.partition("=")
    return f"{name}=***" if equals and "password" in unquote_plus(name).lower() else pair
