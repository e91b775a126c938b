"""Which ``Host`` names an HTTP app answers, so a web page cannot reach it by DNS rebinding.

A page on ``attacker.example`` whose name is made to resolve to 127.0.0.1 makes
the browser send ``Host: attacker.example``; answering only the names this
deployment is reached by (loopback, ``BIND_HOST``, ``ALLOWED_HOSTS``) refuses it
with a 400. docker-compose adds each service's own name; ``*`` turns the check off.
Starlette's :class:`~starlette.middleware.trustedhost.TrustedHostMiddleware` does the work.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.trustedhost import TrustedHostMiddleware

from shared.settings import BaseServiceSettings

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
"""Names every service answers: how its healthcheck and a local browser reach it."""
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})


def allowed_hosts(settings: BaseServiceSettings) -> list[str]:
    """Loopback, ``BIND_HOST`` when it is one address, then ``ALLOWED_HOSTS``."""
    if "*" in settings.allowed_hosts:
        return ["*"]
    hosts = [*LOOPBACK_HOSTS]
    if settings.bind_host not in WILDCARD_BINDS:
        hosts.append(settings.bind_host)
    hosts += [host.lower() for host in settings.allowed_hosts]
    return list(dict.fromkeys(hosts))


def guard_hosts(app: FastAPI, settings: BaseServiceSettings) -> None:
    """Refuse (400) every request and WebSocket whose ``Host`` is not :func:`allowed_hosts`."""
    app.add_middleware(
        TrustedHostMiddleware, allowed_hosts=allowed_hosts(settings), www_redirect=False
    )
