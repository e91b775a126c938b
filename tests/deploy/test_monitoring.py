"""The compose profile ``monitoring`` (Prometheus, redis_exporter, Grafana), without Docker.

The files are cross-checked against the code: Prometheus scrapes every app service on
the port its settings default to, the Grafana dashboard is the one
``tools.grafana_dashboard`` makes, and every metric it plots is one a service
registers or redis_exporter exports.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from tests.deploy.files import COMPOSE, ROOT, SERVICE_SETTINGS, load_compose, with_defaults
from tools import grafana_dashboard

MONITORING = ("redis-exporter", "prometheus", "grafana")
PROMETHEUS_CONFIG = ROOT / "deploy" / "monitoring" / "prometheus.yml"
DATASOURCES = ROOT / "deploy" / "monitoring" / "grafana" / "provisioning" / "datasources"
PROVIDERS = ROOT / "deploy" / "monitoring" / "grafana" / "provisioning" / "dashboards"
# The redis_exporter families the dashboard may use: names from its metric map
# (exporter/exporter.go, namespace "redis"), stream ones only with REDIS_EXPORTER_CHECK_STREAMS.
REDIS_EXPORTER_METRICS = {
    "redis_up",
    "redis_memory_used_bytes",
    "redis_connected_clients",
    "redis_commands_processed_total",
    "redis_stream_length",
    "redis_stream_group_lag",
    "redis_stream_group_messages_pending",
    "redis_stream_groups",
}
SERVICE_MODULES = [
    f"services.{name}.{part}" for name in SERVICE_SETTINGS for part in ("app", "main")
]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose(COMPOSE)


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    """``(host path, container path)`` of each ``./``-relative volume of ``service``."""
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            mounts.append((ROOT / source, target))
    return mounts


def test_monitoring_services_start_only_with_their_profile(compose: dict[str, Any]) -> None:
    profiled = {n: s for n, s in compose["services"].items() if "profiles" in s}
    assert set(profiled) == set(MONITORING)
    for name, service in profiled.items():
        assert service["profiles"] == ["monitoring"], name
        image, _, tag = service["image"].rpartition(":")
        assert image and tag and tag != "latest", f"{name}: pin the image's version"
        for published in service.get("ports", []):
            assert with_defaults(published).startswith("127.0.0.1:"), "loopback by default"


def test_every_mounted_file_is_in_the_repository(compose: dict[str, Any]) -> None:
    for name in MONITORING:
        for source, _ in bind_mounts(compose["services"][name]):
            assert source.exists(), f"{name} mounts {source.relative_to(ROOT)}, which is missing"


def test_prometheus_scrapes_every_app_on_its_default_port_and_redis(
    compose: dict[str, Any],
) -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name, settings in SERVICE_SETTINGS.items():
        (lookup,) = jobs[name]["dns_sd_configs"]
        assert lookup["names"] == [name] and lookup["type"] == "A", name
        assert lookup["port"] == settings.model_fields[f"{name}_port"].default, name
    (target,) = jobs["redis"]["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host in compose["services"] and port == "9121"
    exporter = compose["services"]["redis-exporter"]["environment"]
    assert exporter["REDIS_ADDR"] == "redis://redis:6379"
    assert exporter["REDIS_EXPORTER_CHECK_STREAMS"] == "db0=events:*"
    mounted = dict(bind_mounts(compose["services"]["prometheus"]))
    assert mounted[PROMETHEUS_CONFIG] == "/etc/prometheus/prometheus.yml"


def test_grafana_is_provisioned_with_the_dashboard_and_its_data_source(
    compose: dict[str, Any],
) -> None:
    grafana = compose["services"]["grafana"]
    mounted = dict(bind_mounts(grafana))
    dashboards_dir = mounted[grafana_dashboard.DASHBOARD.parent]
    assert mounted[DATASOURCES.parent] == "/etc/grafana/provisioning"
    (source,) = yaml.safe_load((DATASOURCES / "prometheus.yml").read_text())["datasources"]
    assert source["uid"] == grafana_dashboard.DATASOURCE["uid"]
    assert source["url"] == "http://prometheus:9090" and source["type"] == "prometheus"
    (provider,) = yaml.safe_load((PROVIDERS / "streamloop.yml").read_text())["providers"]
    assert provider["options"]["path"] == dashboards_dir
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{dashboards_dir}/{grafana_dashboard.DASHBOARD.name}"


def test_the_dashboard_file_is_what_the_tool_makes() -> None:
    written = grafana_dashboard.DASHBOARD.read_text()
    assert written == grafana_dashboard.render(), "run: python -m tools.grafana_dashboard"
    model = json.loads(written)
    ids = [panel["id"] for panel in model["panels"]]
    assert len(ids) == len(set(ids)) == len(grafana_dashboard.PANELS)


def test_every_plotted_metric_is_exported() -> None:
    for module in SERVICE_MODULES:
        importlib.import_module(module)
    registered = {
        metric.name + ("_total" if metric.type == "counter" else "")
        for metric in REGISTRY.collect()
    }
    used = grafana_dashboard.metrics_used()
    ours = {name for name in used if name.startswith("streamloop_")}
    assert ours, "the dashboard plots no streamloop metric"
    assert ours <= registered, f"not registered by any service: {sorted(ours - registered)}"
    assert used - ours <= REDIS_EXPORTER_METRICS, sorted(used - ours - REDIS_EXPORTER_METRICS)
