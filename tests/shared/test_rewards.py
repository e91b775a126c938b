"""Segment rewards: scored once whoever scores, short segments skipped, formula pinned."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from shared.bandit import ThompsonBandit, channel_path
from shared.events import ActivityChangedEvent, ChatEvent, StreamEndedEvent
from shared.rewards import SegmentScorer, segment_reward, shrunk_revenue_per_hour
from tests.analytics.streams import START, STREAM, known_stream
from tests.orchestrator.driver import apply

ACTIVITIES = ["talk", "q_and_a", "gameplay", "react", "music"]


def scorer(redis: Redis, keys, tmp_path, min_segment_s: float = 60) -> SegmentScorer:
    return SegmentScorer(
        redis,
        keys,
        lambda ch: ThompsonBandit(redis, keys, ch, ACTIVITIES),
        min_segment_s=min_segment_s,
        grace_s=5,
        state_path=str(tmp_path / "bandit.json"),
    )


def ended_stream() -> list:
    """The known stream, then 10 more minutes of q_and_a, then the end at START + 20 min."""
    c = {"channel": "demo", "source": "sim"}
    more = [
        ChatEvent(**c, id=f"x{n}", ts=START + timedelta(seconds=600 + n * 5), user="u", text="?")
        for n in range(100)
    ]
    end = StreamEndedEvent(**c, id="end", ts=START + timedelta(minutes=20), stream_id=STREAM)
    return [*known_stream(), *more, end]


async def alphas_betas(redis: Redis, keys) -> dict[str, tuple[float, float]]:
    state = await ThompsonBandit(redis, keys, "demo", ACTIVITIES).state()
    return {arm: (s.alpha, s.beta) for arm, s in state.items()}


async def test_each_ended_segment_is_scored_once_however_many_scorers_run(
    redis: Redis, make_settings, tmp_path
) -> None:
    keys = make_settings().keys
    await apply(redis, keys, ended_stream())
    # The stream's clock is at its end; push it past the grace period.
    await apply(
        redis,
        keys,
        [
            ChatEvent(
                channel="demo",
                source="sim",
                id="late",
                user="u",
                text="bye",
                ts=START + timedelta(minutes=21),
            )
        ],
    )
    scorers = [scorer(redis, keys, tmp_path) for _ in range(3)]
    counts = await asyncio.gather(*(s.score_ready("demo") for s in scorers))
    again = await scorers[0].score_ready("demo")
    assert sum(counts) == 2 and again == 0  # talk (0-5 min) and q_and_a (5-20 min)
    state = await alphas_betas(redis, keys)
    for arm in ("talk", "q_and_a"):
        alpha, beta = state[arm]
        assert alpha + beta == pytest.approx(3.0)  # prior 1 + 1, plus one reward split r/(1-r)
    assert state["music"] == (1.0, 1.0)
    saved = channel_path(tmp_path / "bandit.json", "demo")
    assert saved.exists(), "the JSON state is saved after each update"


async def test_segments_wait_for_the_grace_period_and_short_ones_are_not_scored(
    redis: Redis, make_settings, tmp_path
) -> None:
    keys = make_settings().keys
    c = {"channel": "demo", "source": "sim", "stream_id": STREAM}
    music = ActivityChangedEvent(
        **c, id="m", ts=START + timedelta(seconds=600), activity="music", previous="q_and_a"
    )
    await apply(redis, keys, [*known_stream(), music])
    # The clock is at 600 s: q_and_a ended at 600 s and waits for the 5 s grace; talk is scored.
    assert await scorer(redis, keys, tmp_path).score_ready("demo") == 1
    react = ActivityChangedEvent(
        **c, id="r", ts=START + timedelta(seconds=630), activity="react", previous="music"
    )
    late = ChatEvent(
        channel="demo", source="sim", id="l", user="u", text="x", ts=START + timedelta(seconds=640)
    )
    await apply(redis, keys, [react, late])
    # q_and_a is past its grace now; music lasted 30 s < 60 s: never scored.
    assert await scorer(redis, keys, tmp_path).score_ready("demo") == 1
    state = await alphas_betas(redis, keys)
    assert state["music"] == (1.0, 1.0)


class TestRewardFormula:
    def test_as_good_as_the_stream_scores_one_half(self) -> None:
        assert segment_reward(50, 10, 50, 10) == pytest.approx(0.5)

    def test_better_engagement_and_revenue_score_higher(self) -> None:
        assert segment_reward(60, 20, 50, 10) > segment_reward(55, 10, 50, 10) > 0.5

    def test_ten_points_of_engagement_above_baseline(self) -> None:
        expected = 0.7 * (1 / (1 + 2.718281828**-1)) + 0.3 * 0.5
        assert segment_reward(60, 0, 50, 0) == pytest.approx(expected, abs=1e-6)

    def test_bounded(self) -> None:
        assert 0 <= segment_reward(0, 0, 100, 1e6) <= segment_reward(100, 1e6, 0, 0) <= 1


class TestRevenueShrinkage:
    """A chunk's revenue rate is pulled toward the stream's, so one tip cannot swing it."""

    def test_without_a_prior_it_is_the_chunks_own_rate(self) -> None:
        assert shrunk_revenue_per_hour(5.0, 0.05, 20.0, 0.0) == pytest.approx(100.0)

    def test_a_prior_of_fifteen_minutes_at_the_stream_rate(self) -> None:
        # (5 USD + 20 USD/h x 0.25 h) / (0.05 h + 0.25 h) = 10 / 0.3
        assert shrunk_revenue_per_hour(5.0, 0.05, 20.0, 0.25) == pytest.approx(10 / 0.3)

    def test_one_tip_moves_the_reward_far_less(self) -> None:
        plain = [segment_reward(50, rate, 50, 20.0) for rate in (0.0, 100.0)]
        shrunk = [
            segment_reward(50, shrunk_revenue_per_hour(usd, 0.05, 20.0, 0.25), 50, 20.0)
            for usd in (0.0, 5.0)
        ]
        assert shrunk[1] - shrunk[0] < (plain[1] - plain[0]) / 3
