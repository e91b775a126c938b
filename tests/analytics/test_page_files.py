"""The real app serves the dashboard's own files and the vendored libraries of shared/vendor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from services.analytics.app import STATIC
from services.analytics.settings import AnalyticsSettings
from shared.assets import CHART_JS, VENDOR_DIR
from tests.analytics.analytics_server import analytics_server


@pytest.fixture
async def http(make_settings) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    settings: AnalyticsSettings = make_settings(AnalyticsSettings, consumer_name="files")
    async with analytics_server(settings) as (base, _), httpx.AsyncClient(base_url=base) as client:
        yield client


@pytest.mark.parametrize("name", sorted(p.name for p in VENDOR_DIR.glob("*.js")))
async def test_each_vendored_library_is_served_as_it_is_in_shared(
    http: httpx.AsyncClient, name: str
) -> None:
    response = await http.get(f"/static/vendor/{name}")
    assert response.status_code == 200
    assert response.content == (VENDOR_DIR / name).read_bytes()
    assert "javascript" in response.headers["content-type"]


@pytest.mark.parametrize("name", ["dashboard.js", "dashboard.css"])
async def test_the_dashboards_own_files_are_still_served(
    http: httpx.AsyncClient, name: str
) -> None:
    response = await http.get(f"/static/{name}")
    assert response.status_code == 200
    assert response.content == (STATIC / name).read_bytes()


async def test_the_vendor_folder_serves_no_python(http: httpx.AsyncClient) -> None:
    assert (await http.get("/static/vendor/__init__.py")).status_code == 404


def test_the_chart_library_has_one_copy_in_the_repository() -> None:
    root = Path(__file__).resolve().parents[2]
    copies = [
        path.relative_to(root)
        for top in ("services", "shared")
        for path in (root / top).rglob(CHART_JS.name)
    ]
    assert copies == [CHART_JS.relative_to(root)]
