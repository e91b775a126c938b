"""The report as one self-contained HTML page with charts.

Everything the page needs is inside it: styles, the figures (a JSON data block),
Chart.js and the page's own script, so it works offline, from a file, or served by
analytics at ``/retros/{channel}/{stream_id}``. The styles and the script are files
beside this module (``assets/report.css``, ``assets/report.js``, package data);
Chart.js is the one vendored copy every service uses (``shared/vendor``, with its
licence, version and checksum in that folder's README). Without the library the
page still has every table, and says the charts are unavailable.

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
from shared.assets import CHART_JS

ASSETS = Path(__file__).resolve().parent / "assets"
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


@cache
def asset(name: str) -> str:
    """One of the page's own files under ``assets/`` (its styles, its script)."""
    return (ASSETS / name).read_text(encoding="utf-8")


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
    page_script = asset("report.js")
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
        f"<style>{asset('report.css')}</style></head>\n<body><main>{body}</main>\n"
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
