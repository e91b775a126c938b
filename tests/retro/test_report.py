"""The report of a recorded stream with known figures, through the real services' code.

The stream is ``extended_stream`` of tests/readmodel/summary_streams.py, whose
every figure is worked out by hand there: published, consumed by the real
analytics runner, then the lifecycle consumed by the real retro runner. Times are
seconds after 10:00:00 UTC. Segments: talk [0, 300), q_and_a [300, 600), gaming
[600, 780), talk [780, 900); the stream ends at 900 s. ``MIN_SEGMENT_S`` is 60, so
the three segments whose activity is an arm are scored (gaming is no arm; the
default arms are talk, q_and_a, gameplay, react, music).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from services.analytics.settings import AnalyticsSettings
from services.retro.settings import RetroSettings
from shared.bandit import ThompsonBandit, channel_path
from shared.publisher import Publisher
from tests.analytics.streams import STREAM
from tests.analytics.test_metrics import consume_all
from tests.readmodel.summary_streams import TWO, extended_stream
from tests.retro.helpers import ms, retro_settings, reward, running, until

# Rewards (docs/bandit.md): 0.7 x logistic((engagement - baseline) / 10)
#                         + 0.3 x logistic(ln((USD/h + 1) / (baseline USD/h + 1))),
# the baseline being the stream from its start to the segment's end.
# talk [0, 300): the segment is its own baseline, so exactly 0.5.
R_TALK = 0.5
# q_and_a [300, 600): engagement 15.4, 2.50 over 5 min = 30/h. Baseline [0, 600):
# minutes 0..9 = (51.2 + 3 x 14.3 + 76.8) / 10 = 17.09 -> 17.1; 25.00 over 10 min = 150/h.
R_QA = reward(15.4, 30.0, 17.1, 150.0)
# talk [780, 900): engagement 13.6, 75/h. Baseline: the whole stream, 17.2 and
# 48.50 over 15 min = 194/h.
R_TALK2 = reward(13.6, 75.0, 17.2, 194.0)


@pytest.fixture
def analytics(make_settings: Any) -> AnalyticsSettings:
    settings: AnalyticsSettings = make_settings(
        AnalyticsSettings, consumer_name="a1", consumer_block_ms=20
    )
    return settings


@pytest.fixture
def settings(make_settings: Any, tmp_path: Path) -> RetroSettings:
    return retro_settings(make_settings, tmp_path)


async def report_of_recorded_stream(
    redis: Redis, analytics: AnalyticsSettings, settings: RetroSettings
) -> tuple[dict[str, str], str]:
    """Publish and consume the stream, run retro until s-known's report is in; (hash, stdout)."""
    events = extended_stream()
    await Publisher(redis, analytics).publish_many(events)
    await consume_all(redis, analytics, len(events))
    lifecycle = await redis.xlen(settings.keys.channel_stream("lifecycle", "demo"))
    async with running(redis, settings) as (runner, _, out):
        await until(lambda: runner.summary.handled == lifecycle)
    stored = await redis.hgetall(settings.keys.retro("demo", STREAM))
    return stored, out.getvalue()


def read(path: str | Path) -> str:
    return Path(path).read_text(encoding="utf-8")


def section(markdown: str, title: str) -> list[str]:
    """The lines of one ``## title`` section, up to the next heading of that level."""
    lines = markdown.splitlines()
    start = lines.index(f"## {title}") + 1
    end = next((n for n in range(start, len(lines)) if lines[n].startswith("## ")), len(lines))
    return [line for line in lines[start:end] if line]


# Long by design: checks the report figure by figure, in the order the report prints them.
async def test_the_report_figure_by_figure(
    redis: Redis, analytics: AnalyticsSettings, settings: RetroSettings
) -> None:
    stored, printed = await report_of_recorded_stream(redis, analytics, settings)
    markdown = stored["markdown"]
    assert printed == markdown + "\n", "the Markdown is printed to stdout"
    assert markdown.startswith("# Stream retro: demo / s-known\n")
    assert "2026-02-27 10:00:00 UTC to 2026-02-27 10:15:00 UTC (15m 00s on air)." in markdown
    assert "## What is missing" not in markdown and stored["complete"] == "1"

    # Viewers 40 x 300 s + 50 x 300 + 60 x 60 + 90 x 240 = 52,200 viewer-s: mean 58,
    # 14.5 h; chat 10 + 30 + 12 + 4 = 56 over 15 min = 3.73/min; engagement 257.4 / 15.
    # follows erin, frank; raider's 25; dave's sub, erin's resub, carol's 3 gifts;
    # 500 + 100 bits; alice 10 + zed 20; 30 + 6 + 12.50 = 48.50.
    assert section(markdown, "Figures")[2:18] == [
        "| duration | 15m 00s |",
        "| average viewers | 58.0 |",
        "| peak viewers | 90 |",
        "| hours watched | 14.50 |",
        "| chat messages | 56 |",
        "| chat velocity (msg/min) | 3.73 |",
        "| unique chatters | 10 |",
        "| mean engagement (0-100) | 17.2 |",
        "| follows | 2 |",
        "| raids | 1 (25 viewers) |",
        "| new subs | 1 |",
        "| resubs | 1 |",
        "| gifted subs | 3 |",
        "| bits | 600 |",
        "| donations | 2 |",
        "| revenue | $48.50 |",
    ]
    assert "| $30.00 | $6.00 | $12.50 | $48.50 |" in section(markdown, "Figures")

    # talk: 420 s of 900, 17.3 engagement, 14 messages over 7 min, 25.00 over 7 min
    # = 214.29/h, rewards 0.5 and R_TALK2; q_and_a: 300 s, 15.4, 6/min, 30/h;
    # gaming: 180 s, 19.8, 4/min, 21.00 over 3 min = 420/h, not an arm.
    talk_alpha, talk_beta = 1 + R_TALK + R_TALK2, 1 + (1 - R_TALK) + (1 - R_TALK2)
    qa_alpha, qa_beta = 1 + R_QA, 1 + (1 - R_QA)

    def shown(alpha: float, beta: float, chunks: int) -> str:
        """Mean ± posterior sd (reward units), the chunks behind it, and the Beta."""
        total = alpha + beta
        sd = (alpha * beta / (total * total * (total + 1))) ** 0.5
        return f"{alpha / total:.3f} ± {sd:.3f} ({chunks} chunks) Beta({alpha:.2f}, {beta:.2f})"

    prior = "0.500 ± 0.289 (0 chunks) Beta(1.00, 1.00)"
    talk_after = shown(talk_alpha, talk_beta, 2)
    qa_after = shown(qa_alpha, qa_beta, 1)
    assert section(markdown, "Activities")[2:] == [
        f"| `talk` | 2 | 7m 00s | 46.7% | 17.3 | 2.00 | $214.29 | "
        f"{(R_TALK + R_TALK2) / 2:.3f} (2 scored) | {prior} | {talk_after} |",
        f"| `q_and_a` | 1 | 5m 00s | 33.3% | 15.4 | 6.00 | $30.00 | {R_QA:.3f} (1 scored) "
        f"| {prior} | {qa_after} |",
        "| `gaming` | 1 | 3m 00s | 20.0% | 19.8 | 4.00 | $420.00 | not an arm | — | — |",
    ]
    assert section(markdown, "Timeline")[2:] == [
        "| 10:00:00 | 10:05:00 | `talk` | 5m 00s | sim | stream start | 0.500 |",
        f"| 10:05:00 | 10:10:00 | `q_and_a` | 5m 00s | bandit | chat asks | {R_QA:.3f} |",
        "| 10:10:00 | 10:13:00 | `gaming` | 3m 00s | bandit | energy dip | not scored |",
        f"| 10:13:00 | 10:15:00 | `talk` | 2m 00s | bandit | wind down | {R_TALK2:.3f} |",
    ]
    # user0: 5 late + 6 gaming messages; ties by name; late_talker's underscore escaped.
    assert section(markdown, "Top chatters")[2:] == [
        "| 1 | user0 | 11 |",
        "| 2 | gamer | 6 |",
        "| 3 | early0 | 5 |",
        "| 4 | early1 | 5 |",
        "| 5 | user1 | 5 |",
        "| 6 | user2 | 5 |",
        "| 7 | user3 | 5 |",
        "| 8 | user4 | 5 |",
        "| 9 | user5 | 5 |",
        "| 10 | late\\_talker | 4 |",
    ]
    # Donations and bits: zed 20, alice 10, bob 5 + 1; ghost's 50 at 910 s is after the end.
    donors = section(markdown, "Top donors")
    assert donors[2:5] == ["| 1 | zed | $20.00 |", "| 2 | alice | $10.00 |", "| 3 | bob | $6.00 |"]
    assert donors[8:] == [
        "| 10:11:40 | zed | donation | $20.00 | gg |",
        "| 10:01:40 | alice | donation | $10.00 | — |",
        "| 10:03:20 | bob | bits | $5.00 | — |",
        "| 10:11:50 | bob | bits | $1.00 | — |",
    ]
    # Retro saw the stream start: "before" is the bandit then, at the prior.
    bandit = section(markdown, "Bandit")
    assert bandit[0] == (
        "3 of 4 segments scored; posteriors before (at the stream's start) and after."
    )
    assert bandit[3:5] == [
        f"| `talk` | {prior} | {talk_after} | {talk_alpha / 4 - 0.5:+.3f} |",
        f"| `q_and_a` | {prior} | {qa_after} | {qa_alpha / 3 - 0.5:+.3f} |",
    ]
    assert bandit[5:] == [f"| `{arm}` | {prior} | {prior} | +0.000 |" for arm in
                          ("gameplay", "react", "music")]  # fmt: skip


async def test_bandit_rewards_json_files_and_index(
    redis: Redis, analytics: AnalyticsSettings, settings: RetroSettings, tmp_path: Path
) -> None:
    stored, _ = await report_of_recorded_stream(redis, analytics, settings)
    keys = settings.keys
    # The stream-level update: three segments, each once, with the rewards above.
    bandit = ThompsonBandit(redis, keys, "demo", settings.activities)
    state = await bandit.state()
    assert (state["talk"].updates, state["q_and_a"].updates) == (2, 1)
    assert state["talk"].alpha == pytest.approx(1 + R_TALK + R_TALK2, abs=1e-12)
    ids = [f"{STREAM}:{ms(0)}:talk", f"{STREAM}:{ms(300)}:q_and_a", f"{STREAM}:{ms(780)}:talk"]
    expected = dict(zip(ids, [R_TALK, R_QA, R_TALK2], strict=True))
    assert await bandit.rewards(ids) == pytest.approx(expected)
    saved = json.loads(read(channel_path(Path(settings.bandit_state_path), "demo")))
    assert saved["channels"]["demo"]["arms"]["talk"]["updates"] == 2
    # The report: Redis hash, index (by end time), files.
    report = json.loads(stored["report"])
    assert (report["found"], report["complete"], report["segments_scored"]) == (True, True, 3)
    assert report["summary"]["revenue"]["total_usd"] == 48.5
    assert stored["ended_ms"] == str(ms(900))
    assert await redis.zrange(keys.retro_index("demo"), 0, -1, withscores=True) == [
        (STREAM, float(ms(900)))
    ]
    folder = tmp_path / "retros" / "demo"
    assert (folder / "s-known.md").read_text() == stored["markdown"]
    assert (folder / "s-known.html").read_text() == stored["html"]
    assert sorted(p.name for p in folder.iterdir()) == ["s-known.html", "s-known.md"]
    # s-two is still live: no report, but retro kept its "before" snapshot at its start.
    assert await redis.hkeys(keys.retro("demo", TWO)) == ["bandit_before"]


async def test_the_html_page_holds_the_same_figures(
    redis: Redis, analytics: AnalyticsSettings, settings: RetroSettings
) -> None:
    stored, _ = await report_of_recorded_stream(redis, analytics, settings)
    html = stored["html"]
    assert html.startswith("<!doctype html>")
    for figure, value in [
        ("average viewers", "58.0"),
        ("peak viewers", "90"),
        ("hours watched", "14.50"),
        ("chat messages", "56"),
        ("unique chatters", "10"),
        ("revenue", "$48.50"),
    ]:
        assert (
            f'<div class="tile" data-figure="{figure}"><span class="label">{figure}</span>'
            f'<span class="value">{value}</span></div>'
        ) in html
    assert html.count('<canvas id="') == 3
    assert "Chart.js v4" in html, "the chart library is inlined"
    assert "sourceMappingURL" not in html and "<script src" not in html
    data = html.split('<script type="application/json" id="retro-data">')[1].split("</script>")[0]
    series = json.loads(data)
    # Viewer samples 0, 300, 600, 660 s, held to the end; a bar per minute; revenue from
    # 0 at the start, each paid event, the total at the end.
    assert [p["y"] for p in series["viewers"]] == [40, 50, 60, 90, 90]
    assert series["viewers"][-1]["x"] == ms(900)
    assert [p["y"] for p in series["chat"]] == [10, 0, 0, 0, 0, 0, 0, 0, 0, 30, 12, 0, 0, 4, 0]
    assert [p["y"] for p in series["revenue"]] == [0, 10, 15, 22.5, 25, 45, 46, 48.5, 48.5]
    assert [(b["activity"], b["start"], b["end"]) for b in series["bands"]] == [
        ("talk", ms(0), ms(300)),
        ("q_and_a", ms(300), ms(600)),
        ("gaming", ms(600), ms(780)),
        ("talk", ms(780), ms(900)),
    ]


async def test_with_chunks_a_segment_shows_the_mean_reward_of_its_chunks(
    redis: Redis, analytics: AnalyticsSettings, make_settings: Any, tmp_path: Path
) -> None:
    """Chunks of 60 s: talk [0, 300) is five chunks, each scored once; the report's reward of
    the segment is their mean, and the arm rests on the chunks (q_and_a's 5, talk's 5 + 2)."""
    settings = retro_settings(make_settings, tmp_path, score_chunks=True)
    stored, _ = await report_of_recorded_stream(redis, analytics, settings)
    bandit = ThompsonBandit(redis, settings.keys, "demo", settings.activities)
    first = f"{STREAM}:{ms(0)}:talk"
    tokens = [first] + [f"{first}:{k}" for k in range(1, 5)]
    chunk_rewards = await bandit.rewards(tokens)
    assert len(chunk_rewards) == 5
    state = await bandit.state()
    assert (state["talk"].updates, state["q_and_a"].updates) == (5 + 2, 5)
    rows = {row["segment_id"]: row for row in json.loads(stored["report"])["segments"]}
    mean = sum(chunk_rewards.values()) / 5
    assert rows[first]["reward"] == pytest.approx(mean, abs=1e-12)
