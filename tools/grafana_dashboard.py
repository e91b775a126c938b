"""The provisioned Grafana dashboard of the compose profile ``monitoring``, as code.

``python -m tools.grafana_dashboard`` writes
``deploy/monitoring/grafana/dashboards/streamloop.json``; a test checks the file is
what this module makes and that every metric it plots is one the services or
redis_exporter really export. Panels are Grafana ``timeseries`` panels on the
provisioned Prometheus data source (uid ``streamloop-prometheus``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "monitoring" / "grafana" / "dashboards" / "streamloop.json"
DATASOURCE = {"type": "prometheus", "uid": "streamloop-prometheus"}
PANEL_WIDTH = 12
PANEL_HEIGHT = 8
METRIC = re.compile(r"\b((?:streamloop|redis)_[a-z_]+)\b")


@dataclass(frozen=True)
class Panel:
    """One time-series panel: a title, a unit and its queries (``expr``, legend)."""

    title: str
    unit: str
    queries: tuple[tuple[str, str], ...]
    description: str = ""


PANELS = (
    Panel(
        "Events published / s",
        "ops",
        (("sum by (stream) (rate(streamloop_events_published_total[1m]))", "{{stream}}"),),
        "What ingest writes to each events:* stream.",
    ),
    Panel(
        "Events consumed / s",
        "ops",
        (("sum by (group) (rate(streamloop_events_consumed_total[1m]))", "{{group}}"),),
        "Entries each consumer group handled and acked.",
    ),
    Panel(
        "Consumer lag (entries not yet read)",
        "short",
        (
            (
                "sum by (group, stream) "
                "(max by (group, stream, partition) (streamloop_consumer_lag))",
                "{{group}} {{stream}}",
            ),
            ("max by (group, stream) (redis_stream_group_lag)", "redis: {{group}} {{stream}}"),
        ),
        "As the services see it and as Redis reports it (XINFO GROUPS lag).",
    ),
    Panel(
        "Pending entries (read, not acked)",
        "short",
        (("sum by (group) (redis_stream_group_messages_pending)", "{{group}}"),),
        "A pending list that grows means a consumer reads but cannot finish.",
    ),
    Panel(
        "Dead letters / s",
        "ops",
        (("sum by (group, stream) (rate(streamloop_dead_letters_total[5m]))", "{{group}}"),),
        "Entries sent to events:dead, with their reason (docs/operations.md).",
    ),
    Panel(
        "Duplicates dropped / s",
        "ops",
        (("sum by (source) (rate(streamloop_events_duplicate_total[1m]))", "{{source}}"),),
    ),
    Panel(
        "Dashboard clients",
        "short",
        (("sum by (channel) (streamloop_ws_clients)", "{{channel}}"),),
    ),
    Panel(
        "Dashboard frame latency p99",
        "s",
        (
            (
                "histogram_quantile(0.99, sum by (le) "
                "(rate(streamloop_ws_send_latency_seconds_bucket[1m])))",
                "p99",
            ),
        ),
        "From a frame being queued to it being written to the client.",
    ),
    Panel(
        "Ingest: events held while Redis is unreachable",
        "short",
        (
            ("sum(streamloop_ingest_buffered_events)", "held now"),
            ("sum(rate(streamloop_ingest_buffer_overflow_total[5m]))", "refused / s"),
        ),
    ),
    Panel(
        "Post-stream reports",
        "short",
        (("sum by (channel) (increase(streamloop_retro_reports_total[1h]))", "{{channel}}"),),
    ),
    Panel(
        "Worker restarts / s",
        "ops",
        (("sum by (job, task) (rate(streamloop_task_restarts_total[5m]))", "{{job}} {{task}}"),),
        "A worker that died and was restarted; /healthz is 503 naming it meanwhile.",
    ),
    Panel(
        "Refused at the edge / s",
        "ops",
        (
            (
                "sum by (reason) (rate(streamloop_http_connections_cut_total[5m]))",
                "cut: {{reason}}",
            ),
            (
                "sum by (type) (rate(streamloop_ingest_unknown_channel_total[5m]))",
                "unknown: {{type}}",
            ),
        ),
        "Connections closed by the HTTP limits; notifications for channels not in CHANNELS.",
    ),
    Panel(
        "Claude consultations / s",
        "ops",
        (("sum by (outcome) (rate(streamloop_claude_requests_total[5m]))", "{{outcome}}"),),
        "advice, refusal, unusable, error, config_error (a setting to fix), paused.",
    ),
    Panel(
        "Claude latency p50 / p99 and cost per hour",
        "s",
        (
            (
                "histogram_quantile(0.5, sum by (le) "
                "(rate(streamloop_claude_latency_seconds_bucket[5m])))",
                "p50",
            ),
            (
                "histogram_quantile(0.99, sum by (le) "
                "(rate(streamloop_claude_latency_seconds_bucket[5m])))",
                "p99",
            ),
            ("sum(rate(streamloop_claude_cost_usd_total[1h])) * 3600", "USD / hour"),
        ),
    ),
    Panel(
        "Claude tokens / s",
        "short",
        (("sum by (kind) (rate(streamloop_claude_tokens_total[5m]))", "{{kind}}"),),
    ),
    Panel(
        "Chat lines to Twitch / s",
        "ops",
        (("sum by (outcome) (rate(streamloop_chat_lines_total[5m]))", "{{outcome}}"),),
    ),
    Panel(
        "Redis memory",
        "bytes",
        (("redis_memory_used_bytes", "used"),),
    ),
    Panel(
        "Redis stream length",
        "short",
        (("max by (stream) (redis_stream_length)", "{{stream}}"),),
        "Streams are capped (MAXLEN ~); a length at its cap is expected.",
    ),
)


def panel_json(panel: Panel, index: int) -> dict[str, Any]:
    """One Grafana panel, laid out two to a row."""
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {
            "h": PANEL_HEIGHT,
            "w": PANEL_WIDTH,
            "x": (index % 2) * PANEL_WIDTH,
            "y": (index // 2) * PANEL_HEIGHT,
        },
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {
                "refId": chr(ord("A") + n),
                "datasource": DATASOURCE,
                "expr": expr,
                "legendFormat": legend,
            }
            for n, (expr, legend) in enumerate(panel.queries)
        ],
    }


def dashboard() -> dict[str, Any]:
    """The whole dashboard model."""
    return {
        "uid": "streamloop-overview",
        "title": "streamloop",
        "tags": ["streamloop"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "panels": [panel_json(panel, n) for n, panel in enumerate(PANELS)],
    }


def metrics_used() -> set[str]:
    """Every metric family name the panels query (histogram suffixes removed)."""
    names = {m for p in PANELS for expr, _ in p.queries for m in METRIC.findall(expr)}
    return {re.sub(r"_bucket$", "", name) for name in names}


def render() -> str:
    """The dashboard file's text."""
    return json.dumps(dashboard(), indent=2) + "\n"


def main() -> None:
    DASHBOARD.parent.mkdir(parents=True, exist_ok=True)
    DASHBOARD.write_text(render())
    print(f"wrote {DASHBOARD.relative_to(ROOT)} ({len(PANELS)} panels)")


if __name__ == "__main__":
    main()
