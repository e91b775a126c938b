"""Claude's situation report on a real Redis: the figures of a known stream, line by line."""

from __future__ import annotations

from datetime import timedelta

import pytest
from redis.asyncio import Redis

from services.orchestrator.context import MetricsReader, posterior_summary, render
from shared.bandit import ThompsonBandit
from shared.events import DonationEvent
from tests.analytics.streams import START, STREAM, known_stream
from tests.orchestrator.driver import apply

ACTIVITIES = ["talk", "q_and_a", "gameplay", "react", "music"]
AT_MS = int((START + timedelta(seconds=600)).timestamp() * 1000)


@pytest.fixture
async def situation_text(redis: Redis, make_settings) -> str:
    keys = make_settings().keys
    events = known_stream()
    events.append(
        DonationEvent(
            channel="demo",
            source="sim",
            id="d2",
            ts=START + timedelta(seconds=590),
            user="zoe",
            amount="4.20",
            message="more   music\nplease",
        )
    )
    await apply(redis, keys, events)
    bandit = ThompsonBandit(redis, keys, "demo", ACTIVITIES)
    await bandit.update_once("talk", 0.75, f"{STREAM}:{int(START.timestamp() * 1000)}:talk", 60)
    await bandit.update("talk", 0.25)
    await redis.xadd(keys.decisions("demo"), {"chat_message": "Welcome in!", "stream_id": STREAM})
    await redis.xadd(keys.decisions("demo"), {"chat_message": "old stream", "stream_id": "other"})
    await redis.xadd(keys.decisions("demo"), {"chat_message": "", "stream_id": STREAM})
    await redis.hset(
        keys.metrics("demo"),
        mapping={
            "is_live": "1",
            "viewer_count": "50",
            "chat_velocity": "30",
            "engagement_score": "40.5",
            "donations_per_hour": "12",
        },
    )
    reader = MetricsReader(redis, keys)
    situation = await reader.situation(
        "demo", current="q_and_a", on_air_s=300, at_ms=AT_MS, suggestion="music", bandit=bandit
    )
    return render(situation)


async def test_the_report_has_time_on_air_figures_trend_posteriors_paid_and_own_lines(
    situation_text: str,
) -> None:
    lines = situation_text.splitlines()
    assert lines[0] == "Stream live for 10m 00s."
    assert lines[1] == "On air: q_and_a for 5m 00s."
    assert lines[2].startswith("Stream state: 50 viewers, chat velocity 30 msg/min")
    # Viewer samples: 40 from 0 s, 50 from 300 s, 60 at 600 s; minute marks 360..600 s.
    assert lines[3] == "Viewers, last 5 min: 50, 50, 50, 50, 60 (rising)."
    # talk: Beta(1 + 0.75 + 0.25, 1 + 0.25 + 0.75) = Beta(2, 2): mean 0.5, sd sqrt(4/80).
    assert "- talk: 0.50 ± 0.22, n=2; this stream: 5m 00s (0.75)" in lines
    assert "- q_and_a: 0.50 ± 0.29, n=0; this stream: 5m 00s (on air)" in lines
    assert "- music: 0.50 ± 0.29, n=0; none this stream" in lines
    assert "Bandit suggests: music." in lines
    # Donations and cheers of the last 10 min of this stream, newest first, one line.
    assert (
        'Recent paid: zoe donated $4.20 "more music please"; bob cheered $5.00; '
        "alice donated $10.00." in lines
    )
    assert lines[-1] == 'Your last chat lines: "Welcome in!"'


async def test_posterior_summary_reads_mean_sd_and_count_from_the_bandit(
    redis: Redis, make_settings
) -> None:
    bandit = ThompsonBandit(redis, make_settings().keys, "demo", ACTIVITIES)
    for _ in range(8):
        await bandit.update("react", 1.0)
    summary = await posterior_summary(bandit)
    mean, sd, n = summary["react"]
    assert (round(mean, 4), n) == (0.9, 8), "Beta(9, 1)"
    assert sd == pytest.approx((9 * 1 / (10**2 * 11)) ** 0.5)
    assert summary["talk"] == (0.5, pytest.approx((1 / 12) ** 0.5), 0)
