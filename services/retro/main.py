"""``python -m services.retro``: a report for every stream that ends."""

from __future__ import annotations

from services.retro.app import create_app
from services.retro.settings import RetroSettings
from shared.logs import configure_logging
from shared.serve import HttpLimits, serve


def main() -> int:
    """Entry point; returns the process exit code."""
    settings = RetroSettings()
    configure_logging("retro", settings.log_level, settings.log_format)
    serve(
        create_app(settings),
        settings.bind_host,
        settings.retro_port,
        limits=HttpLimits.of(settings),
    )
    return 0
