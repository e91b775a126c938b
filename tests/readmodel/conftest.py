"""The analytics settings every read-model test here publishes and reads with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from services.analytics.settings import AnalyticsSettings


@pytest.fixture
def settings(make_settings: Callable[..., Any]) -> AnalyticsSettings:
    settings: AnalyticsSettings = make_settings(
        AnalyticsSettings, consumer_name="a1", consumer_block_ms=20
    )
    return settings
