"""The report as Markdown: printed to stdout, stored in Redis, written to ``data/retros/``.

User text (names, donation messages, reasons) is escaped, so it can neither break a
table nor inject HTML into a renderer that passes HTML through.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.retro import text as t
from services.retro.model import RetroReport

MD_SPECIAL = str.maketrans(
    {
        "\\": "\\\\",
        "|": "\\|",
        "`": "\\`",
        "*": "\\*",
        "_": "\\_",
        "[": "\\[",
        "]": "\\]",
        "#": "\\#",
        "<": "&lt;",
        ">": "&gt;",
        "&": "&amp;",
        "\r": " ",
        "\n": " ",
    }
)


def md(value: str) -> str:
    """``value`` as literal Markdown text (one line, nothing interpreted)."""
    return value.translate(MD_SPECIAL)


def code(name: str) -> str:
    """An activity name as a code span (names are ``[a-z0-9_]``; anything else escaped)."""
    return f"`{name}`" if name.replace("_", "").isalnum() else md(name)


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> list[str]:
    """A Markdown table; ``align`` holds one ``l``/``r`` per column (default: all left)."""
    marks = [("---:" if a == "r" else "---") for a in (align or "l" * len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def render_markdown(report: RetroReport) -> str:
    """The whole report as one Markdown document."""
    lines = heading(report)
    lines += missing(report)
    if report.found:
        lines += figures(report)
        lines += activities(report)
        lines += timeline(report)
        lines += people(report)
    lines += bandit(report)
    lines += notes(report)
    return "\n".join(lines).rstrip() + "\n"


def heading(report: RetroReport) -> list[str]:
    s = report.summary
    title = f"# Stream retro: {md(report.channel)} / {md(report.stream_id or '(no stream)')}"
    if not report.found:
        return [title, "", "Analytics has no record of this stream starting.", ""]
    span = f"{t.when(s.started)} to {t.when(s.ended) if s.ended else 'still live'}"
    return [title, "", f"{span} ({t.duration(s.duration_s)} on air).", ""]


def missing(report: RetroReport) -> list[str]:
    if not report.missing:
        return []
    return ["## What is missing", "", *(f"- {md(item)}" for item in report.missing), ""]


def figures(report: RetroReport) -> list[str]:
    s = report.summary
    r = s.revenue
    rows = t.figure_rows(s)
    revenue = [
        (t.money(r.donations_usd), t.money(r.bits_usd), t.money(r.subs_usd), t.money(r.total_usd))
    ]
    return [
        "## Figures",
        "",
        *table(("figure", "value"), rows, "lr"),
        "### Revenue by kind",
        "",
        *table(("donations", "bits", "subs", "total"), revenue, "rrrr"),
    ]


def activities(report: RetroReport) -> list[str]:
    header = t.ACTIVITY_COLUMNS
    rows = [
        (
            code(a.activity),
            t.count(a.segments),
            t.duration(a.on_air_s),
            t.percent(a.share),
            t.decimal(a.mean_engagement),
            t.decimal(a.chat_velocity, 2),
            t.money(a.revenue_per_hour_usd),
            (f"{t.reward(a.reward)} ({a.scored} scored)" if a.is_arm else "not an arm"),
            t.posterior(a.before),
            t.posterior(a.after),
        )
        for a in report.activities
    ]
    if not rows:
        return ["## Activities", "", "No activity changes were recorded.", ""]
    return ["## Activities", "", *table(header, rows, "lrrrrrrrll")]


def timeline(report: RetroReport) -> list[str]:
    header = ("start", "end", "activity", "duration", "decided by", "reason", "reward")
    rows = [
        (
            t.clock(s.start),
            t.clock(s.end),
            code(s.activity),
            t.duration(s.duration_s),
            md(s.decided_by) or t.DASH,
            md(s.reason) or t.DASH,
            t.reward(s.reward) if s.scored else "not scored",
        )
        for s in report.segments
    ]
    if not rows:
        return []
    return ["## Timeline", "", *table(header, rows, "lllrlll")]


def people(report: RetroReport) -> list[str]:
    s = report.summary
    out = ["## Top chatters", ""]
    chatters = [(str(n), md(c.user), t.count(c.messages)) for n, c in enumerate(s.top_chatters, 1)]
    out += table(("#", "chatter", "messages"), chatters, "rlr") if chatters else ["None.", ""]
    out += ["## Top donors", ""]
    donors = [(str(n), md(d.user), t.money(d.usd)) for n, d in enumerate(s.top_donors, 1)]
    out += table(("#", "donor", "donations + bits"), donors, "rlr") if donors else ["None.", ""]
    if report.top_donations:
        out += ["### Biggest donations", ""]
        rows = [
            (t.clock(d.ts), md(d.user), d.type, t.money(d.usd), md(d.message) or t.DASH)
            for d in report.top_donations
        ]
        out += table(("time", "from", "kind", "amount", "message"), rows, "lllrl")
    return out


def bandit(report: RetroReport) -> list[str]:
    taken = {"stream_start": "at the stream's start", "stream_end": "at the stream's end"}
    scored = (
        f"{report.segments_scored} of {len(report.segments)} segments scored"
        if report.segments
        else "no segments to score"
    )
    out = [
        "## Bandit",
        "",
        f"{scored}; posteriors before ({taken.get(report.bandit_taken, 'unknown')}) and after.",
        "",
    ]
    rows = [
        (code(arm), t.posterior(before), t.posterior(after), t.change(before, after))
        for arm, (before, after) in report.bandit.items()
    ]
    return out + table(("arm", "before", "after", "change in mean"), rows, "lllr")


def notes(report: RetroReport) -> list[str]:
    if not report.notes:
        return []
    return ["## Notes", "", *(f"- {md(note)}" for note in report.notes), ""]
