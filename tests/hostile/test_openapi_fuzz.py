"""schemathesis over the ingest and analytics OpenAPI schemas: no 5xx, responses as documented."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import response_schema_conformance

from services.analytics.app import create_app as create_analytics
from services.analytics.settings import AnalyticsSettings
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings

TOKEN = "dash-token-0123"
CHECKS = [not_a_server_error, response_schema_conformance]
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)


@pytest.fixture
def lifespans(hostile_cleanup: None) -> Iterator[None]:
    """schemathesis enters each app's lifespan on first use; leave them all after the test."""
    yield
    shutdown_lifespans()


def fuzz(app: FastAPI, headers: dict[str, str] | None = None) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, "the schema lists no operations"
    strategies = [operation.as_strategy() for operation in operations]
    # Random channel names mostly get 404; also aim at a known channel to reach the handlers.
    strategies += [
        operation.as_strategy(path_parameters={"channel": "demo"})
        for operation in operations
        if "{channel}" in operation.path
    ]

    @FUZZ
    @given(case=st.one_of(strategies))
    def check(case: Any) -> None:
        response = case.call(headers=headers)
        case.validate_response(response, checks=CHECKS, headers=headers)

    check()


@pytest.mark.usefixtures("lifespans")
def test_ingest_openapi_fuzz(make_settings: Any) -> None:
    settings = make_settings(
        IngestSettings,
        ingest_sources=["webhooks"],
        channels=["demo", "other"],
        donation_webhook_secret="s3cret-donations",
        twitch_webhook_secret="s3cret-webhook-key-0123456789",
        webhook_max_body_bytes=4096,
        allowed_hosts="testserver",  # the name schemathesis's ASGI client sends
    )
    fuzz(create_ingest(settings))


@pytest.mark.usefixtures("lifespans")
def test_analytics_openapi_fuzz(make_settings: Any) -> None:
    settings = make_settings(
        AnalyticsSettings,
        consumer_name="a1",
        consumer_block_ms=20,
        broadcast_interval_s=0.2,
        channels=["demo", "other"],
        dashboard_token=TOKEN,
        allowed_hosts="testserver",
    )
    fuzz(create_analytics(settings), headers={"Authorization": f"Bearer {TOKEN}"})
