"""The report as one self-contained HTML page with charts.

Everything the page needs is inside it: styles, the figures (a JSON data block),
Chart.js and the page's own script, so it works offline, from a file, or served by
analytics at ``/retros/{channel}/{stream_id}``. Chart.js is read at build time from
analytics' vendored copy (``services/analytics/static/vendor/chart.umd.min.js``): one
copy of the library in the repository, with its licence, version and checksum in
that folder's README, and shipped as package data already. Only the file is read;
no analytics code is imported. Without it the page still has every table, and says
the charts are unavailable.

Safety: every piece of text is HTML-escaped; the JSON block escapes ``<``, ``>``
and ``&`` so no value can close it; and a Content-Security-Policy allows exactly
the page's two inline scripts (by hash) and no network at all, so even a missed
escape could neither run a script nor load anything.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from functools import cache
from html import escape
from pathlib import Path
from typing import Any

from services.retro import text as t
from services.retro.model import RetroReport

CHART_JS = (
    Path(__file__).resolve().parent.parent / "analytics" / "static" / "vendor" / "chart.umd.min.js"
)
PALETTE = (
    "#1f6feb",
    "#8250df",
    "#d4731b",
    "#1a7f37",
    "#bf3989",
    "#9a6700",
    "#0f8a8f",
    "#cf222e",
    "#57606a",
    "#2da44e",
)
SOURCE_MAP = re.compile(r"^//# sourceMappingURL=.*$", re.M)


@cache
def chart_js() -> str:
    """The vendored Chart.js, without its source-map comment; empty when missing."""
    try:
        source = CHART_JS.read_text(encoding="utf-8")
    except OSError:
        return ""
    return SOURCE_MAP.sub("", source).replace("</script", "<\\/script")


def h(value: object) -> str:
    """Escaped text for element content and quoted attributes."""
    return escape(str(value), quote=True)


def colours(report: RetroReport) -> dict[str, str]:
    """One colour per activity, in order of first appearance."""
    names = [s.activity for s in report.segments] + [a.activity for a in report.activities]
    out: dict[str, str] = {}
    for name in names:
        out.setdefault(name, PALETTE[len(out) % len(PALETTE)])
    return out


def chart_data(report: RetroReport, palette: dict[str, str]) -> dict[str, Any]:
    """What the charts draw: three series on one time range, and the activity bands."""
    s = report.summary
    start = s.started_ms or 0
    end = s.ended_ms if s.ended_ms is not None else start + round(s.duration_s * 1000)
    viewers = [{"x": p.ts_ms, "y": p.count} for p in s.viewer_series]
    if viewers:
        viewers[0]["x"] = max(viewers[0]["x"], start)  # a sample in force before the start
        viewers.append({"x": end, "y": viewers[-1]["y"]})
    chat = [{"x": p.ts_ms + 30_000, "y": p.messages_per_min} for p in s.chat_velocity_series]
    revenue = [{"x": start, "y": 0.0}]
    revenue += [{"x": p.ts_ms, "y": p.cumulative_usd} for p in s.revenue_series]
    revenue.append({"x": end, "y": s.revenue.total_usd})
    bands = [
        {
            "activity": seg.activity,
            "start": seg.start_ms,
            "end": seg.end_ms if seg.end_ms is not None else end,
            "colour": palette[seg.activity],
        }
        for seg in report.segments
    ]
    return {
        "start": start,
        "end": end,
        "viewers": viewers,
        "chat": chat,
        "revenue": revenue,
        "bands": bands,
    }


def script_json(data: object) -> str:
    """JSON that is safe inside a ``<script type="application/json">`` element."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def csp_hash(script: str) -> str:
    """The CSP source allowing one inline script."""
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def table(header: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """A table of already-escaped cells; columns in ``numeric`` are right-aligned."""
    head = "".join(
        f"<th{' class=num' if n in numeric else ''}>{cell}</th>" for n, cell in enumerate(header)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=num' if n in numeric else ''}>{cell}</td>" for n, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def chip(name: str, palette: dict[str, str]) -> str:
    colour = palette.get(name, "#57606a")
    return f'<span class="chip" style="border-color:{colour}">{h(name)}</span>'


def render_html(report: RetroReport) -> str:
    """The whole page (see the module doc)."""
    palette = colours(report)
    library = chart_js()
    page_script = PAGE_SCRIPT
    scripts = [library, page_script] if library else [page_script]
    policy = (
        "default-src 'none'; "
        f"script-src {' '.join(csp_hash(s) for s in scripts)}; "
        "style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
    )
    title = f"Stream retro · {report.channel} · {report.stream_id or '(no stream)'}"
    body = "".join(
        [
            header(report),
            missing(report),
            figures(report) if report.found else "",
            charts(report, palette, bool(library)) if report.found else "",
            activities(report, palette) if report.found else "",
            timeline(report, palette) if report.found else "",
            people(report) if report.found else "",
            bandit(report, palette),
            notes(report),
        ]
    )
    data = script_json(chart_data(report, palette) if report.found else None)
    library_tag = f"<script>{library}</script>" if library else ""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{h(policy)}">'
        f'<link rel="icon" href="data:,"><title>{h(title)}</title>'
        f"<style>{STYLE}</style></head>\n<body><main>{body}</main>\n"
        f'<script type="application/json" id="retro-data">{data}</script>\n'
        f"{library_tag}\n<script>{page_script}</script>\n</body></html>\n"
    )


def header(report: RetroReport) -> str:
    s = report.summary
    state = "complete" if report.complete else "incomplete"
    if report.found:
        span = f"{t.when(s.started)} → {t.when(s.ended) if s.ended else 'still live'}"
        line = f"{h(span)} · {h(t.duration(s.duration_s))} on air"
    else:
        line = "analytics has no record of this stream starting"
    return (
        f'<header><h1>Stream retro <span class="badge {state}">{state}</span></h1>'
        f'<p class="sub"><b>#{h(report.channel)}</b> · <code>{h(report.stream_id)}</code></p>'
        f'<p class="sub">{line}</p></header>'
    )


def missing(report: RetroReport) -> str:
    if not report.missing:
        return ""
    items = "".join(f"<li>{h(item)}</li>" for item in report.missing)
    return f'<section class="missing" id="missing"><h2>What is missing</h2><ul>{items}</ul>' + (
        "</section>"
    )


def figures(report: RetroReport) -> str:
    s = report.summary
    r = s.revenue
    tiles = t.figure_rows(s)
    cells = "".join(
        f'<div class="tile" data-figure="{h(label)}"><span class="label">{h(label)}</span>'
        f'<span class="value">{h(value)}</span></div>'
        for label, value in tiles
    )
    revenue = table(
        ("donations", "bits", "subs", "total"),
        [[h(t.money(x)) for x in (r.donations_usd, r.bits_usd, r.subs_usd, r.total_usd)]],
        (0, 1, 2, 3),
    )
    return (
        f'<section id="figures"><h2>Figures</h2><div class="tiles">{cells}</div>'
        f"<h3>Revenue by kind</h3>{revenue}</section>"
    )


def charts(report: RetroReport, palette: dict[str, str], available: bool) -> str:
    boxes = "".join(
        f'<figure class="chart"><figcaption>{h(caption)}</figcaption>'
        f'<div class="chart-box"><canvas id="{cid}" role="img" aria-label="{h(caption)}">'
        "</canvas></div></figure>"
        for cid, caption in (
            ("viewers-chart", "viewers over time"),
            ("chat-chart", "chat velocity (messages per minute)"),
            ("revenue-chart", "cumulative revenue (USD)"),
        )
    )
    legend = "".join(chip(name, palette) for name in palette)
    status = "" if available else "charts unavailable: the chart library was not found at build"
    return (
        f'<section id="charts"><h2>Over time</h2>'
        f'<p class="legend">activity bands: {legend}</p>'
        f'<p id="chart-status" class="muted">{h(status)}</p>'
        "<noscript><p>The charts need JavaScript; every figure is in the tables.</p></noscript>"
        f"{boxes}</section>"
    )


def activities(report: RetroReport, palette: dict[str, str]) -> str:
    header = t.ACTIVITY_COLUMNS
    rows = [
        (
            chip(a.activity, palette),
            h(t.count(a.segments)),
            h(t.duration(a.on_air_s)),
            h(t.percent(a.share)),
            h(t.decimal(a.mean_engagement)),
            h(t.decimal(a.chat_velocity, 2)),
            h(t.money(a.revenue_per_hour_usd)),
            h(f"{t.reward(a.reward)} ({a.scored} scored)" if a.is_arm else "not an arm"),
            h(t.posterior(a.before)),
            h(t.posterior(a.after)),
        )
        for a in report.activities
    ]
    content = table(header, rows, (1, 2, 3, 4, 5, 6, 7)) if rows else "<p>No activity changes.</p>"
    return f'<section id="activities"><h2>Activities</h2>{content}</section>'


def timeline(report: RetroReport, palette: dict[str, str]) -> str:
    if not report.segments:
        return ""
    s = report.summary
    start = s.started_ms or report.segments[0].start_ms
    span = max(1, round(s.duration_s * 1000))
    blocks = "".join(
        f'<span class="block" style="left:{(seg.start_ms - start) / span * 100:.3f}%;'
        f"width:{max(0.2, seg.duration_s * 1000 / span * 100):.3f}%;"
        f'background:{palette[seg.activity]}" title="{h(seg.activity)}"></span>'
        for seg in report.segments
    )
    rows = [
        (
            h(t.clock(seg.start)),
            h(t.clock(seg.end)),
            chip(seg.activity, palette),
            h(t.duration(seg.duration_s)),
            h(seg.decided_by or t.DASH),
            h(seg.reason or t.DASH),
            h(t.reward(seg.reward) if seg.scored else "not scored"),
        )
        for seg in report.segments
    ]
    listing = table(
        ("start", "end", "activity", "duration", "decided by", "reason", "reward"), rows, (3, 6)
    )
    return (
        f'<section id="timeline"><h2>Timeline</h2><div class="band">{blocks}</div>'
        f"{listing}</section>"
    )


def people(report: RetroReport) -> str:
    s = report.summary
    chatters = table(
        ("#", "chatter", "messages"),
        [(str(n), h(c.user), h(t.count(c.messages))) for n, c in enumerate(s.top_chatters, 1)],
        (0, 2),
    )
    donors = table(
        ("#", "donor", "donations + bits"),
        [(str(n), h(d.user), h(t.money(d.usd))) for n, d in enumerate(s.top_donors, 1)],
        (0, 2),
    )
    biggest = table(
        ("time", "from", "kind", "amount", "message"),
        [
            (h(t.clock(d.ts)), h(d.user), h(d.type), h(t.money(d.usd)), h(d.message or t.DASH))
            for d in report.top_donations
        ],
        (3,),
    )
    return (
        '<section id="people" class="columns">'
        f"<div><h2>Top chatters</h2>{chatters if s.top_chatters else '<p>None.</p>'}</div>"
        f"<div><h2>Top donors</h2>{donors if s.top_donors else '<p>None.</p>'}</div>"
        "</section>"
        + (
            f'<section id="donations"><h2>Biggest donations</h2>{biggest}</section>'
            if report.top_donations
            else ""
        )
    )


def bandit(report: RetroReport, palette: dict[str, str]) -> str:
    taken = {"stream_start": "at the stream's start", "stream_end": "at the stream's end"}
    scored = (
        f"{report.segments_scored} of {len(report.segments)} segments scored"
        if report.segments
        else "no segments to score"
    )
    rows = [
        (chip(arm, palette), h(t.posterior(b)), h(t.posterior(a)), h(t.change(b, a)))
        for arm, (b, a) in report.bandit.items()
    ]
    return (
        f'<section id="bandit"><h2>Bandit</h2><p>{h(scored)}; posteriors before '
        f"({h(taken.get(report.bandit_taken, 'unknown'))}) and after.</p>"
        f"{table(('arm', 'before', 'after', 'change in mean'), rows, (3,))}</section>"
    )


def notes(report: RetroReport) -> str:
    if not report.notes:
        return ""
    items = "".join(f"<li>{h(note)}</li>" for note in report.notes)
    return f'<section id="notes"><h2>Notes</h2><ul>{items}</ul></section>'


STYLE = """
:root { color-scheme: light; --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
  color: var(--fg); background: #fff; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 20px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 10px; }
h3 { font-size: 15px; margin: 16px 0 8px; }
.sub, .muted { color: var(--muted); margin: 2px 0; }
.badge { font-size: 12px; padding: 2px 8px; border-radius: 10px; vertical-align: middle; }
.badge.complete { background: #dafbe1; color: #1a7f37; }
.badge.incomplete { background: #fff1e5; color: #bc4c00; }
.missing { background: #fff8c5; border: 1px solid #d4a72c66; border-radius: 6px;
  padding: 4px 16px; margin-top: 16px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 8px; }
.tile { background: var(--bg); border: 1px solid var(--line); border-radius: 6px;
  padding: 8px 10px; }
.tile .label { display: block; color: var(--muted); font-size: 12px; }
.tile .value { font-size: 18px; font-weight: 600; font-variant-numeric: tabular-nums; }
table { border-collapse: collapse; width: 100%; margin: 4px 0 8px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 8px; text-align: left;
  vertical-align: top; overflow-wrap: anywhere; }
th { background: var(--bg); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.chip { display: inline-block; border-left: 4px solid; padding: 0 6px; background: var(--bg);
  border-radius: 3px; font-family: ui-monospace, monospace; font-size: 12px; white-space: nowrap; }
.legend .chip { margin-right: 6px; }
.chart { margin: 8px 0 18px; }
.chart figcaption { font-weight: 600; margin-bottom: 4px; }
.chart-box { position: relative; height: 240px; }
.band { position: relative; height: 18px; background: var(--bg); border-radius: 4px;
  overflow: hidden; margin-bottom: 8px; }
.band .block { position: absolute; top: 0; bottom: 0; }
.columns { display: grid; grid-template-columns: 1fr 1fr; gap: 24px; }
@media (max-width: 720px) { .columns { grid-template-columns: 1fr; } }
"""

PAGE_SCRIPT = """
(function () {
  "use strict";
  // The report's figures; everything shown here is text or numbers from this block.
  const status = { charts: 0, bands: 0, points: {}, error: null };
  window.streamloopRetro = status;
  const data = JSON.parse(document.getElementById("retro-data").textContent);
  const note = document.getElementById("chart-status");
  if (!data) return;
  if (typeof window.Chart !== "function") {
    status.error = "Chart.js missing";
    if (note) note.textContent = "charts unavailable: the chart library did not load";
    return;
  }
  const Chart = window.Chart;
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.color = "#59636e";

  const pad = (n) => String(n).padStart(2, "0");
  const clock = (ms) => {
    const d = new Date(ms);
    return pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
  };

  // Activity bands: a light wash behind the data over each segment's time, and a
  // solid strip in front of it along the bottom of the chart.
  function paintBands(chart, draw) {
    const area = chart.chartArea;
    const x = chart.scales.x;
    const ctx = chart.ctx;
    ctx.save();
    for (const band of data.bands) {
      const left = Math.max(area.left, x.getPixelForValue(band.start));
      const right = Math.min(area.right, x.getPixelForValue(band.end));
      if (right > left) draw(ctx, band, area, left, right);
    }
    ctx.restore();
  }
  const bands = {
    id: "activityBands",
    beforeDatasetsDraw(chart) {
      paintBands(chart, (ctx, band, area, left, right) => {
        ctx.globalAlpha = 0.1;
        ctx.fillStyle = band.colour;
        ctx.fillRect(left, area.top, right - left, area.bottom - area.top);
      });
    },
    afterDatasetsDraw(chart) {
      paintBands(chart, (ctx, band, area, left, right) => {
        ctx.globalAlpha = 1;
        ctx.fillStyle = band.colour;
        ctx.fillRect(left, area.bottom - 6, right - left, 6);
        status.bands += 1;
      });
    },
  };

  function make(id, type, points, colour, options) {
    const canvas = document.getElementById(id);
    if (!canvas) return;
    status.points[id] = points.length;
    new Chart(canvas, {
      type: type,
      data: {
        datasets: [Object.assign({
          data: points,
          borderColor: colour,
          backgroundColor: colour + "33",
          borderWidth: 2,
          pointRadius: 0,
          pointHitRadius: 6,
        }, options || {})],
      },
      options: {
        animation: false,
        parsing: false,
        responsive: true,
        maintainAspectRatio: false,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: { title: (items) => (items.length ? clock(items[0].parsed.x) : "") },
          },
        },
        scales: {
          x: {
            type: "linear",
            offset: false,
            min: data.start,
            max: data.end,
            ticks: { callback: (value) => clock(value), maxTicksLimit: 10, maxRotation: 0 },
          },
          // One y-axis width on every chart, so their time axes line up.
          y: {
            beginAtZero: true,
            ticks: { maxTicksLimit: 6 },
            afterFit: (axis) => {
              axis.width = 56;
            },
          },
        },
      },
      plugins: [bands],
    });
    status.charts += 1;
  }

  try {
    make("viewers-chart", "line", data.viewers, "#1f6feb", { stepped: true, fill: "origin" });
    make("chat-chart", "bar", data.chat, "#8250df", { borderWidth: 0 });
    make("revenue-chart", "line", data.revenue, "#1a7f37", { stepped: true, fill: "origin" });
  } catch (error) {
    status.error = String(error);
    if (note) note.textContent = "charts failed: " + String(error);
  }
})();
"""
