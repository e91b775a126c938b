"""Settings of the retro worker (``python -m services.retro``).

The bandit settings (``ACTIVITIES``, ``MIN_SEGMENT_S``, ``BANDIT_*``) come from
``shared.settings.BanditSettings``, as the orchestrator's do: one ``.env``
configures both, and both score segments the same way.
"""

from __future__ import annotations

from pydantic import Field

from shared.settings import BanditSettings, ConsumerSettings


class RetroSettings(ConsumerSettings, BanditSettings):
    """The post-stream report and the bandit's stream-level update."""

    retro_port: int = Field(default=8003, description="HTTP port: health and metrics.")
    retro_dir: str = Field(
        default="data/retros", description="Folder the reports are written to (Markdown + HTML)."
    )
    retro_print: bool = Field(default=True, description="Print each report's Markdown to stdout.")
    retro_catchup_timeout_s: float = Field(
        default=15.0,
        ge=0,
        description="Longest wait for analytics to reach a stream's end before reporting anyway.",
    )
