"""``python -m services.orchestrator``: decisions for every live channel, scaled by leases."""

from __future__ import annotations

from services.orchestrator.app import create_app
from services.orchestrator.settings import OrchestratorSettings
from shared.logs import configure_logging
from shared.serve import HttpLimits, serve


def main() -> int:
    """Entry point; returns the process exit code."""
    settings = OrchestratorSettings()
    configure_logging("orchestrator", settings.log_level, settings.log_format)
    serve(
        create_app(settings),
        settings.bind_host,
        settings.orchestrator_port,
        limits=HttpLimits.of(settings),
    )
    return 0
