"""Serving a service's FastAPI app with uvicorn, the same way in every service.

SIGINT and SIGTERM both start uvicorn's orderly shutdown (the app's lifespan
stops its tasks, saves what must be saved and logs its summary line), after
which the process exits 0. Plain uvicorn would re-raise the signal at the end,
so a clean SIGTERM would look like a crash to a supervisor.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

import uvicorn
from fastapi import FastAPI

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
GRACEFUL_SHUTDOWN_S = 5
"""Seconds open connections get to finish at shutdown before uvicorn cancels them.

Without it a dashboard client that stopped reading keeps its socket's write
buffer full and uvicorn waits for it forever, so SIGTERM would never exit.
"""


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


def serve(app: FastAPI, host: str, port: int, *, ws_per_message_deflate: bool = False) -> None:
    """Run ``app`` until SIGINT or SIGTERM, then shut down in order and return.

    ``ws_per_message_deflate`` accepts WebSocket compression when a client offers
    it. Off by default: compressing each small frame once per client costs more
    CPU than the bandwidth it saves (the ``analytics-fanout`` benchmark).
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        ws_per_message_deflate=ws_per_message_deflate,
    )
    _Server(config).run()
