"""Redis password and TLS (``rediss://``) work through ``REDIS_URL``, on real servers.

Two ``redis-server`` processes per module (:mod:`tests.shared.secure_redis`): one with
``requirepass``, one with ``requirepass`` that listens only on a TLS port with a
certificate from a throwaway CA. The services' own code runs against them: the
shared client, the publisher, the consumer runner, ingest's ``/healthz``, the
dead-letters command and ``ensure_redis``. A refused password or certificate must
fail at once with an error that names the problem, and the password must never
show up in an error, a log line or an HTTP answer.

The password holds ``@ : / # %`` so the URL must be percent-encoded, as
docs/operations.md says; both spellings are searched for wherever text leaks.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import redis as sync_redis
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.consumer import ConsumerRunner
from shared.dead_letters import cli as dead_letters
from shared.events import ChatEvent
from shared.publisher import Publisher
from shared.redis_client import connect, connect_settings, redact_url
from shared.redis_server import RedisRefused, ensure_redis
from shared.settings import ConsumerSettings
from tests.shared.counting_handler import CountingHandler
from tests.shared.secure_redis import SecureRedisServer, TLSUnsupported

PASSWORD = f"s3cr@t:/#%-{uuid.uuid4().hex[:12]}"
WRONG = f"wr0ng@:/#%-{uuid.uuid4().hex[:12]}"
SECRETS = (PASSWORD, quote(PASSWORD, safe=""), WRONG, quote(WRONG, safe=""))
TS = datetime(2026, 2, 27, 10, 30, tzinfo=UTC)
GROUP = "securitygroup"


@pytest.fixture(scope="module")
def password_server() -> Iterator[SecureRedisServer]:
    """A plain-TCP server that requires :data:`PASSWORD`."""
    server = SecureRedisServer(PASSWORD)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def tls_server() -> Iterator[SecureRedisServer]:
    """A TLS-only server that requires :data:`PASSWORD`; skipped if redis-server has no TLS."""
    server = SecureRedisServer(PASSWORD, tls=True)
    try:
        try:
            server.start()
        except TLSUnsupported as error:
            pytest.skip(f"TLS not tested: {error}")
        yield server
    finally:
        server.close()


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid.uuid4().hex[:12]}:"


def consumer_settings(url: str, prefix: str) -> ConsumerSettings:
    return ConsumerSettings(
        _env_file=None,
        redis_url=url,
        redis_key_prefix=prefix,
        consumer_name="c1",
        consumer_block_ms=50,
        consumer_reclaim_interval_s=0.05,
    )


def ingest_settings(url: str, tmp_path: Path) -> IngestSettings:
    return IngestSettings(
        _env_file=None,
        redis_url=url,
        redis_key_prefix=f"test:{uuid.uuid4().hex[:12]}:",
        ingest_sources=["webhooks"],
        ingest_spill_dir=str(tmp_path / "spill"),
    )


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"a password leaked into: {text[:300]!r}"


async def until(condition: Callable[[], Awaitable[bool] | bool], timeout_s: float = 5.0) -> None:
    """Poll ``condition`` (sync or async) every 20 ms until it holds."""
    async with asyncio.timeout(timeout_s):
        while True:
            result = condition()
            if await result if isinstance(result, Awaitable) else result:
                return
            await asyncio.sleep(0.02)


async def publish_and_consume(url: str, prefix: str) -> None:
    """Publish one chat event with the Publisher and have the ConsumerRunner handle it once."""
    settings = consumer_settings(url, prefix)
    redis = connect_settings(settings)
    try:
        event = ChatEvent(id="c0", channel="demo", ts=TS, source="sim", user="u", text="hi")
        assert await Publisher(redis, settings).publish(event)
        counts_key = f"{prefix}counts"
        runner = ConsumerRunner(
            redis,
            settings,
            GROUP,
            CountingHandler(counts_key),
            partition=settings.partitioning.of("demo"),
        )
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        try:
            await until(lambda: runner.summary.handled >= 1)
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=5)
        assert await redis.hgetall(counts_key) == {"chat:c0": "1"}
        assert (await redis.xpending(settings.keys.channel_stream("chat", "demo"), GROUP))[
            "pending"
        ] == 0
        assert runner.summary.reconnects == 0
    finally:
        await redis.aclose()


async def refusal(url: str) -> RedisConnectionError:
    """The error one PING at ``url`` raises (it must raise, and within 5 s)."""
    client = connect(url)
    try:
        async with asyncio.timeout(5):
            with pytest.raises(RedisConnectionError) as caught:
                await client.ping()
    finally:
        await client.aclose()
    return caught.value


def connections_received(server: SecureRedisServer) -> int:
    admin = sync_redis.Redis.from_url(server.url)
    try:
        return int(admin.info("stats")["total_connections_received"])
    finally:
        admin.close()


# ---- password -------------------------------------------------------------------------


class TestPassword:
    async def test_the_shared_client_authenticates_with_the_urls_password(
        self, password_server: SecureRedisServer
    ) -> None:
        client = connect(password_server.url)
        try:
            assert await client.ping()
            assert await client.acl_whoami() == "default"
        finally:
            await client.aclose()

    async def test_publisher_and_consumer_runner_work_end_to_end(
        self, password_server: SecureRedisServer, prefix: str
    ) -> None:
        await publish_and_consume(password_server.url, prefix)

    async def test_a_missing_password_is_refused_at_once(
        self, password_server: SecureRedisServer
    ) -> None:
        before = connections_received(password_server)
        error = await refusal(password_server.url_with(password=None))
        assert isinstance(error, AuthenticationError)
        assert "Authentication required" in str(error)
        # not retried like a network error: one connection (the counting one is the other)
        assert connections_received(password_server) - before == 2

    async def test_a_wrong_password_is_refused_without_echoing_it(
        self, password_server: SecureRedisServer
    ) -> None:
        before = connections_received(password_server)
        error = await refusal(password_server.url_with(password=WRONG))
        assert isinstance(error, AuthenticationError)
        assert "invalid username-password pair" in str(error)
        assert connections_received(password_server) - before == 2
        assert_no_secret(str(error), repr(error))

    async def test_healthz_says_the_password_is_refused_and_nothing_prints_it(
        self,
        password_server: SecureRedisServer,
        tmp_path: Path,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.DEBUG)
        settings = ingest_settings(password_server.url_with(password=WRONG), tmp_path)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://localhost"
            ) as client:
                response = await client.get("/healthz")
        assert response.status_code == 503
        assert "invalid username-password pair" in response.json()["redis"]
        assert_no_secret(response.text, caplog.text, repr(settings), str(settings))

    async def test_a_consumer_logs_why_it_cannot_connect_and_not_the_password(
        self, password_server: SecureRedisServer, prefix: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        settings = consumer_settings(password_server.url_with(password=WRONG), prefix)
        redis = connect_settings(settings)
        runner = ConsumerRunner(
            redis,
            settings,
            GROUP,
            CountingHandler(f"{prefix}counts"),
            partition=settings.partitioning.of("demo"),
        )
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        try:
            await until(lambda: runner.summary.reconnects >= 2)
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=5)
            await redis.aclose()
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert warnings and all("invalid username-password pair" in line for line in warnings)
        assert_no_secret(caplog.text)

    async def test_the_dead_letters_command_shows_the_url_without_the_password(
        self, password_server: SecureRedisServer, prefix: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        settings = consumer_settings(password_server.url_with(password=WRONG), prefix)
        args = argparse.Namespace(dead_letters_command="list", limit=20, stream=None)
        out = io.StringIO()
        assert await dead_letters.run(settings, args, out) == 1
        stderr = capsys.readouterr().err
        assert f"redis://:***@127.0.0.1:{password_server.port}/0" in stderr
        assert "invalid username-password pair" in stderr
        assert_no_secret(stderr, out.getvalue())

    def test_ensure_redis_uses_the_protected_server_and_refuses_a_bad_password(
        self, password_server: SecureRedisServer
    ) -> None:
        with ensure_redis(password_server.url) as url:
            assert url == password_server.url
        for bad in (WRONG, None):  # not an embedded server in its place: that would hide it
            with (
                pytest.raises(RedisRefused, match="refused the password") as caught,
                ensure_redis(password_server.url_with(password=bad)),
            ):
                pytest.fail("ensure_redis yielded a URL for a refused password")
            assert f"127.0.0.1:{password_server.port}/0" in str(caught.value)
            assert_no_secret(str(caught.value))


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("redis://:hunter2@redis:6379/0", "redis://:***@redis:6379/0"),
        (
            "rediss://app:hunter2@redis.example:6380/0?ssl_ca_certs=/ca.pem&ssl_cert_reqs=required",
            "rediss://app:***@redis.example:6380/0?ssl_ca_certs=/ca.pem&ssl_cert_reqs=required",
        ),
        ("rediss://:p%40ss%3Aw%2Fd@h:6380/0", "rediss://:***@h:6380/0"),
        ("redis://h:6379/0?password=hunter2&db=1", "redis://h:6379/0?password=***&db=1"),
        ("rediss://h/0?ssl_password=hunter2", "rediss://h/0?ssl_password=***"),
    ],
)
def test_redact_url_hides_every_password_redis_py_would_read(url: str, shown: str) -> None:
    assert redact_url(url) == shown


# ---- TLS ------------------------------------------------------------------------------


class TestTLS:
    async def test_rediss_with_the_test_ca_publishes_and_consumes(
        self, tls_server: SecureRedisServer, prefix: str
    ) -> None:
        assert tls_server.url.startswith("rediss://")
        await publish_and_consume(tls_server.url, prefix)

    async def test_the_server_speaks_only_tls(self, tls_server: SecureRedisServer) -> None:
        plain = f"redis://:{quote(PASSWORD, safe='')}@127.0.0.1:{tls_server.port}/0"
        error = await refusal(plain)
        assert not isinstance(error, AuthenticationError)

    @pytest.mark.parametrize("trusting", ["another CA", "the system CAs"])
    async def test_an_untrusted_certificate_fails_fast_with_an_ssl_error(
        self, tls_server: SecureRedisServer, trusting: str
    ) -> None:
        assert tls_server.certificates is not None
        url = (
            tls_server.url_with(password=PASSWORD, ca=tls_server.certificates.other_ca)
            if trusting == "another CA"
            else tls_server.url.split("?")[0]
        )
        error = await refusal(url)
        assert "CERTIFICATE_VERIFY_FAILED" in str(error)
        assert_no_secret(str(error))

    async def test_tls_query_parameters_reach_the_connection(
        self, tls_server: SecureRedisServer
    ) -> None:
        # without a CA the certificate is refused (above); ssl_cert_reqs=none lets it through
        unchecked = tls_server.url.split("?")[0] + "?ssl_cert_reqs=none"
        client = connect(unchecked)
        try:
            assert await client.ping()
        finally:
            await client.aclose()

    async def test_ingest_healthz_is_ok_over_password_and_tls(
        self, tls_server: SecureRedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        assert tls_server.certificates is not None
        untrusted = tls_server.url_with(password=PASSWORD, ca=tls_server.certificates.other_ca)
        answers = {}
        for name, url in (("trusted", tls_server.url), ("untrusted", untrusted)):
            app = create_app(ingest_settings(url, tmp_path))
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://localhost"
                ) as client:
                    answers[name] = await client.get("/healthz")
        assert answers["trusted"].status_code == 200
        assert answers["trusted"].json() == {
            "service": "streamloop-ingest",
            "status": "ok",
            "redis": "ok",
        }
        assert answers["untrusted"].status_code == 503
        assert "CERTIFICATE_VERIFY_FAILED" in answers["untrusted"].json()["redis"]
        assert_no_secret(answers["untrusted"].text, caplog.text)

    def test_ensure_redis_uses_the_tls_server_and_refuses_an_untrusted_one(
        self, tls_server: SecureRedisServer
    ) -> None:
        assert tls_server.certificates is not None
        with ensure_redis(tls_server.url) as url:
            assert url == tls_server.url
        untrusted = tls_server.url_with(password=PASSWORD, ca=tls_server.certificates.other_ca)
        with (
            pytest.raises(RedisRefused, match="failed the TLS handshake") as caught,
            ensure_redis(untrusted),
        ):
            pytest.fail("ensure_redis yielded a URL for an untrusted certificate")
        assert "rediss://:***@127.0.0.1" in str(caught.value)
        assert_no_secret(str(caught.value))
