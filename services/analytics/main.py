"""``python -m services.analytics``: metrics, the dashboard and its API."""

from __future__ import annotations

from services.analytics.app import create_app
from services.analytics.settings import AnalyticsSettings
from shared.logs import configure_logging
from shared.serve import HttpLimits, serve


def main() -> int:
    """Entry point; returns the process exit code."""
    settings = AnalyticsSettings()
    configure_logging("analytics", settings.log_level, settings.log_format)
    app = create_app(settings)
    deflate = settings.ws_per_message_deflate
    limits = HttpLimits.of(settings)
    serve(
        app,
        settings.bind_host,
        settings.analytics_port,
        limits=limits,
        ws_per_message_deflate=deflate,
    )
    return 0
