"""How figures read in both renderings of the report (Markdown and HTML)."""

from __future__ import annotations

from services.retro.model import Posterior
from shared.clock import format_ms
from shared.readmodel.models import StreamSummary

DASH = "—"


def money(usd: float) -> str:
    """``$1,234.50``."""
    return f"${usd:,.2f}"


def count(value: int) -> str:
    """``12,345``."""
    return f"{value:,}"


def decimal(value: float | None, places: int = 1) -> str:
    """``58.0`` (a dash for None)."""
    return DASH if value is None else f"{value:,.{places}f}"


def percent(share: float) -> str:
    """``46.7%`` from 0.4667."""
    return f"{share * 100:.1f}%"


def duration(seconds: float) -> str:
    """``1h 05m 00s``, ``15m 00s``, ``42s``."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def clock(ts: str | None) -> str:
    """``10:05:00`` from an RFC 3339 UTC time (a dash for None)."""
    if not ts:
        return DASH
    return ts[11:19]


def when(ts: str | None) -> str:
    """``2026-02-27 10:05:00 UTC`` (a dash for None)."""
    if not ts:
        return DASH
    return f"{ts[:10]} {ts[11:19]} UTC"


def when_ms(at_ms: int | None) -> str:
    """:func:`when` of epoch ms."""
    return DASH if at_ms is None else when(format_ms(at_ms))


def reward(value: float | None) -> str:
    """``0.613`` (a dash for None)."""
    return DASH if value is None else f"{value:.3f}"


def posterior(p: Posterior | None) -> str:
    """``0.625 ± 0.217 (2 chunks) Beta(2.50, 1.50)``: the estimated reward, its uncertainty
    (posterior sd) in reward units, the rewards it rests on, and the posterior."""
    if p is None:
        return DASH
    return f"{p.mean:.3f} ± {p.sd:.3f} ({p.updates} chunks) Beta({p.alpha:.2f}, {p.beta:.2f})"


def change(before: Posterior | None, after: Posterior | None) -> str:
    """``+0.042`` (the posterior mean's change), a dash when either is unknown."""
    if before is None or after is None:
        return DASH
    return f"{after.mean - before.mean:+.3f}"


ACTIVITY_COLUMNS = (
    "activity",
    "segments",
    "time on air",
    "share",
    "mean engagement",
    "chat velocity",
    "revenue / h",
    "reward",
    "posterior before",
    "posterior after",
)
"""Columns of the per-activity table, the same in the Markdown and the HTML report."""


def figure_rows(s: StreamSummary) -> list[tuple[str, str]]:
    """The stream's headline figures as (label, formatted value), for both renderings."""
    r = s.revenue
    return [
        ("duration", duration(s.duration_s)),
        ("average viewers", decimal(s.avg_viewers)),
        ("peak viewers", count(s.peak_viewers)),
        ("hours watched", decimal(s.hours_watched, 2)),
        ("chat messages", count(s.chat_messages)),
        ("chat velocity (msg/min)", decimal(s.chat_velocity, 2)),
        ("unique chatters", count(s.unique_chatters)),
        ("mean engagement (0-100)", decimal(s.mean_engagement)),
        ("follows", count(s.follows)),
        ("raids", f"{count(s.raids)} ({count(s.raid_viewers)} viewers)"),
        ("new subs", count(s.new_subs)),
        ("resubs", count(s.resubs)),
        ("gifted subs", count(s.gifted_subs)),
        ("bits", count(s.bits)),
        ("donations", count(s.donations_count)),
        ("revenue", money(r.total_usd)),
    ]
