"""Serving a service's FastAPI app with uvicorn, the same way in every service.

SIGINT and SIGTERM both start uvicorn's orderly shutdown (the app's lifespan
stops its tasks, saves what must be saved and logs its summary line), after
which the process exits 0. Plain uvicorn would re-raise the signal at the end,
so a clean SIGTERM would look like a crash to a supervisor.

Every port faces clients that may never finish a request, so connections are
bounded (:class:`HttpLimits`): at most ``HTTP_MAX_CONNECTIONS`` are kept open
(more are closed as soon as they are accepted, so idle sockets cannot use up the
process's file descriptors), a connection that has not sent a whole request
head within ``HTTP_HEADER_TIMEOUT_S`` (idle, or a slowloris trickling bytes) is
closed, and an idle keep-alive connection closes after ``HTTP_KEEP_ALIVE_S``.
Bodies are bounded by the routes that read them (``WEBHOOK_BODY_TIMEOUT_S``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType

import uvicorn
from fastapi import FastAPI
from prometheus_client import Counter
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shared.settings import BaseServiceSettings

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
GRACEFUL_SHUTDOWN_S = 5
"""Seconds open connections get to finish at shutdown before uvicorn cancels them.

Without it a dashboard client that stopped reading keeps its socket's write
buffer full and uvicorn waits for it forever, so SIGTERM would never exit.
"""
MAX_HEAD_BYTES = 16_384
"""Largest request line plus headers taken (h11's default; httptools has no cap of its own)."""

CUT = Counter(
    "streamloop_http_connections_cut_total",
    "HTTP connections closed by the server's limits.",
    ["reason"],
)


@dataclass(frozen=True)
class HttpLimits:
    """How many connections a server keeps, and how long a request head may take."""

    max_connections: int = 1000
    header_timeout_s: float = 10.0
    keep_alive_s: int = 5

    @classmethod
    def of(cls, settings: BaseServiceSettings) -> HttpLimits:
        """The limits named in ``settings`` (``HTTP_*``)."""
        return cls(
            settings.http_max_connections,
            settings.http_header_timeout_s,
            settings.http_keep_alive_s,
        )


class _Server(uvicorn.Server):
    """uvicorn, minus the re-raising of the signal that stopped it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {signum: signal.signal(signum, self._on_signal) for signum in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.handle_exit(signum, frame)


class GuardedHttpProtocol(HttpToolsProtocol):
    """Closes connections past the bound and those too slow to send a request head.

    ``limits`` is set on the subclass :func:`guarded_protocol` makes (uvicorn builds
    the protocol from a class, with no room for arguments of ours).
    """

    limits: HttpLimits
    _head_deadline: asyncio.TimerHandle | None = None
    _cycle_when_armed: object = None
    _head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            CUT.labels("too_many_connections").inc()
            transport.abort()
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.get_protocol() is not self:
            return  # upgraded to a WebSocket: its own protocol reads from here on
        if self.cycle is not self._cycle_when_armed:
            self._disarm()  # a request head arrived; the rest of the bytes are its body
        elif self._between_requests():
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                CUT.labels("head_too_large").inc()
                self.transport.abort()
                return
        if self._head_deadline is None and self._between_requests():
            self._arm()  # the first bytes of the next request head

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()  # uvicorn's keep-alive timer takes over until the next bytes

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._cycle_when_armed, self._head_bytes = self.cycle, 0
        self._head_deadline = self.loop.call_later(self.limits.header_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None
        self._cycle_when_armed, self._head_bytes = self.cycle, 0

    def _too_slow(self) -> None:
        self._head_deadline = None
        upgraded = self.transport.get_protocol() is not self
        if self.cycle is self._cycle_when_armed and not upgraded and self._between_requests():
            CUT.labels("slow_request_head").inc()
            self.transport.close()

    def _between_requests(self) -> bool:
        """No request in progress on an open connection: a head is all it may send."""
        in_progress = self.cycle is not None and not self.cycle.response_complete
        return not in_progress and not self.transport.is_closing()


def guarded_protocol(limits: HttpLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, closing what :class:`HttpLimits` does not allow."""
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,), {"limits": limits})


def serve(
    app: FastAPI,
    host: str,
    port: int,
    *,
    limits: HttpLimits | None = None,
    ws_per_message_deflate: bool = False,
) -> None:
    """Run ``app`` until SIGINT or SIGTERM, then shut down in order and return.

    ``limits`` bound connections (see the module docstring). ``ws_per_message_deflate``
    accepts WebSocket compression when a client offers it. Off by default: compressing
    each small frame once per client costs more CPU than the bandwidth it saves (the
    ``analytics-fanout`` benchmark).
    """
    limits = limits or HttpLimits()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded_protocol(limits),
        log_config=None,
        access_log=False,
        timeout_keep_alive=limits.keep_alive_s,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        ws_per_message_deflate=ws_per_message_deflate,
    )
    _Server(config).run()
