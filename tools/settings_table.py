"""The README's settings table and ``.env.example``, generated from the settings classes.

``python -m tools.settings_table`` prints the table; ``--write`` replaces the block
between ``<!-- settings -->`` and ``<!-- /settings -->`` in README.md; ``--write-env``
rewrites ``.env.example`` (every setting with its description and default, grouped
like the table, then the few variables only docker-compose.yml reads). Tests fail
when either is out of date.
"""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic_settings import BaseSettings

from services.analytics.settings import AnalyticsSettings
from services.ingest.settings import IngestSettings
from services.orchestrator.settings import OrchestratorSettings
from services.retro.settings import RetroSettings
from shared.redis_client import redact_url
from shared.settings import (
    BanditSettings,
    BaseServiceSettings,
    ConsumerSettings,
    TwitchApiSettings,
)

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
ENV_EXAMPLE = ROOT / ".env.example"
SECTIONS: list[tuple[str, type[BaseSettings]]] = [
    ("every service", BaseServiceSettings),
    ("every consumer-group service (analytics, retro)", ConsumerSettings),
    ("ingest and orchestrator: the Twitch app and accounts", TwitchApiSettings),
    ("ingest", IngestSettings),
    ("analytics", AnalyticsSettings),
    ("orchestrator and retro: the bandit", BanditSettings),
    ("orchestrator", OrchestratorSettings),
    ("retro", RetroSettings),
]


def default_text(value: Any) -> str:
    """A default as a person would type it in ``.env``."""
    if isinstance(value, SecretStr):
        secret = value.get_secret_value()
        return redact_url(secret) if "://" in secret else "(secret)" if secret else ""
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return f"{len(value)} currencies built in" if value else "{}"
    return str(value)


# Variables docker-compose.yml interpolates that no service reads: name, default, meaning.
COMPOSE_ONLY: list[tuple[str, str, str]] = [
    (
        "PUBLISH_ADDRESS",
        "127.0.0.1",
        "Host address docker compose publishes the dashboard's port on; 0.0.0.0 for every "
        "interface (then set DASHBOARD_TOKEN).",
    ),
    (
        "PROMETHEUS_PORT",
        "9090",
        "Host port of Prometheus in the compose profile `monitoring` (on PUBLISH_ADDRESS).",
    ),
    (
        "GRAFANA_PORT",
        "3000",
        "Host port of Grafana in the compose profile `monitoring` (on PUBLISH_ADDRESS).",
    ),
    (
        "GRAFANA_ADMIN_PASSWORD",
        "admin",
        "Password of Grafana's admin user in the profile `monitoring`; change it before "
        "publishing Grafana beyond loopback.",
    ),
]


def own_fields(cls: type[BaseSettings]) -> list[tuple[str, str, Any]]:
    """``(name, description, default)`` of each setting that ``cls`` adds to its bases."""
    inherited = {
        name
        for base in cls.__mro__[1:]
        if hasattr(base, "model_fields")
        for name in getattr(base, "model_fields", {})
    }
    out = []
    for name, field in cls.model_fields.items():
        if name in inherited:
            continue
        value = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
        out.append((name, field.description or "", value))
    return out


def rows(cls: type[BaseSettings]) -> list[str]:
    """One table row per setting that ``cls`` adds."""
    return [
        f"| `{name.upper()}` | `{default_text(value)}` | {description} |"
        for name, description, value in own_fields(cls)
    ]


def table() -> str:
    """The whole settings reference, grouped by who reads each setting."""
    out: list[str] = []
    for title, cls in SECTIONS:
        out += [f"**{title}**", "", "| variable | default | meaning |", "|---|---|---|"]
        out += [*rows(cls), ""]
    return "\n".join(out).rstrip() + "\n"


def replaced(readme: str) -> str:
    """``readme`` with its settings block regenerated."""
    block = f"<!-- settings -->\n{table()}<!-- /settings -->"
    return re.sub(r"<!-- settings -->.*?<!-- /settings -->", lambda _: block, readme, flags=re.S)


ENV_WIDTH = 88
ENV_HEADER = """\
# streamloop settings: copy this file to .env and change what you need.
# Every service reads .env at start (make run; docker compose passes it to each
# container); names are case-insensitive. Each line holds the default, so an
# unchanged copy changes nothing. Secrets are commented out and empty: fill in
# only those your sources need. docker-compose.yml sets REDIS_URL and BIND_HOST
# for the containers itself.
#
# Generated from the settings classes: python -m tools.settings_table --write-env
"""


def env_value(value: Any) -> str | None:
    """A default as an ``.env`` value; None when it is a secret to fill in or cannot be
    written on one line (the built-in currency table)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value() or None
    if isinstance(value, dict):
        return None
    return default_text(value)


def env_entry(name: str, description: str, value: Any) -> list[str]:
    """One setting: its description and default as a comment, then ``NAME=default``."""
    comment = textwrap.wrap(description, width=ENV_WIDTH - 2)
    default = f"Default: {default_text(value) or 'empty'}"
    if comment and len(comment[-1]) + 1 + len(default) <= ENV_WIDTH - 2:
        comment[-1] += f" {default}"
    else:
        comment.append(default)
    written = env_value(value)
    line = f"# {name.upper()}=" if written is None else f"{name.upper()}={written}"
    return [*(f"# {part}" for part in comment), line]


def env_heading(title: str) -> str:
    """A section's rule: ``# ---- title ------``, ENV_WIDTH wide."""
    start = f"# ---- {title} "
    return start + "-" * max(4, ENV_WIDTH - len(start))


def env_example() -> str:
    """The whole ``.env.example``: every setting, grouped like the README's table."""
    out = [ENV_HEADER]
    for title, cls in SECTIONS:
        out.append(env_heading(title))
        for name, description, value in own_fields(cls):
            out += ["", *env_entry(name, description, value)]
        out.append("")
    out.append(env_heading("docker compose only: docker-compose.yml reads these, no service"))
    for name, default, description in COMPOSE_ONLY:
        out += ["", *env_entry(name, description, default)]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    if "--write" in sys.argv:
        README.write_text(replaced(README.read_text()))
    if "--write-env" in sys.argv:
        ENV_EXAMPLE.write_text(env_example())
    if not {"--write", "--write-env"} & set(sys.argv):
        sys.stdout.write(table())
