"""Which ``Host`` names an HTTP app answers, so a web page cannot reach it by DNS rebinding.

A page on ``attacker.example`` whose name is made to resolve to 127.0.0.1 makes
the browser send ``Host: attacker.example``; answering only the names this
deployment is reached by refuses it with a 400. Answered: any IP address
(a page can reach an address only as its own origin, so the browser's
same-origin rule already holds: this is how healthchecks, Prometheus's DNS
discovery and a LAN browser reach a service), ``localhost``, ``BIND_HOST`` and
the names in ``ALLOWED_HOSTS`` (docker-compose adds each service's own name);
``*`` turns the check off. Starlette's
:class:`~starlette.middleware.trustedhost.TrustedHostMiddleware` checks the names.
"""

from __future__ import annotations

import ipaddress

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import Receive, Scope, Send

from shared.settings import BaseServiceSettings

LOOPBACK_NAMES = ("localhost",)
"""Names every service answers besides addresses: how a local browser reaches it."""
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})


def allowed_hosts(settings: BaseServiceSettings) -> list[str]:
    """``localhost``, ``BIND_HOST`` when it is one address, then ``ALLOWED_HOSTS``."""
    if "*" in settings.allowed_hosts:
        return ["*"]
    hosts = [*LOOPBACK_NAMES]
    if settings.bind_host not in WILDCARD_BINDS:
        hosts.append(settings.bind_host)
    hosts += [host.lower() for host in settings.allowed_hosts]
    return list(dict.fromkeys(hosts))


def is_address(host_header: str | None) -> bool:
    """Whether ``Host`` names an IP address (``10.0.0.5:8001``, ``[::1]:8000``), not a name."""
    host = (host_header or "").strip()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else ""
    elif host.count(":") == 1:
        host = host.split(":")[0]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class TrustedHosts(TrustedHostMiddleware):
    """Starlette's host check, letting IP-address hosts through (see the module docstring)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and is_address(Headers(scope=scope).get("host")):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def guard_hosts(app: FastAPI, settings: BaseServiceSettings) -> None:
    """Refuse (400) every request and WebSocket whose ``Host`` is not answered."""
    app.add_middleware(TrustedHosts, allowed_hosts=allowed_hosts(settings), www_redirect=False)
