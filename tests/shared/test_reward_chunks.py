"""A long run of one activity is scored in fixed chunks, each exactly once, whoever scores it."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from shared.bandit import ThompsonBandit
from shared.keys import Keys
from shared.readmodel.models import Segment
from shared.rewards import Chunk, SegmentScorer
from tests.analytics.streams import START, STREAM, known_stream
from tests.orchestrator.driver import apply
from tests.shared.test_rewards import ACTIVITIES, ended_stream

S = 1000  # ms per second
START_MS = int(START.timestamp() * 1000)


def chunked(redis: Redis, keys: Keys, tmp_path, grace_s: float = 5, chunks: bool = True):
    return SegmentScorer(
        redis,
        keys,
        lambda ch: ThompsonBandit(redis, keys, ch, ACTIVITIES, weight=4.0),
        min_segment_s=60,
        grace_s=grace_s,
        state_path=str(tmp_path / f"{keys.prefix.strip(':')}.json"),
        chunks=chunks,
    )


def segment(end_s: float | None) -> Segment:
    end = None if end_s is None else START_MS + int(end_s * S)
    return Segment(
        segment_id=f"{STREAM}:{START_MS}:talk",
        activity="talk",
        previous="",
        decided_by="sim",
        reason="",
        on_air=end is None,
        start=START.isoformat(),
        end=None,
        start_ms=START_MS,
        end_ms=end,
        duration_s=0.0 if end_s is None else end_s,
    )


def windows(chunks: list[Chunk]) -> list[tuple[str, float, float]]:
    return [
        (c.token.removeprefix(f"{STREAM}:{START_MS}:talk"), (c.start_ms - START_MS) / S,
         (c.end_ms - START_MS) / S)
        for c in chunks
    ]  # fmt: skip


class TestChunkWindows:
    """Chunks of L = 60 s, grace 5 s: the windows and tokens do not depend on when one asks."""

    def test_a_running_segment_yields_a_chunk_once_it_is_known_not_to_be_the_last(
        self, redis: Redis, tmp_path
    ) -> None:
        scorer = chunked(redis, Keys("x:"), tmp_path)
        assert scorer.ready_chunks(segment(None), START_MS + 100 * S) == []
        assert windows(scorer.ready_chunks(segment(None), START_MS + 125 * S)) == [("", 0, 60)]

    def test_the_last_chunk_runs_to_the_end_and_waits_for_the_grace(
        self, redis: Redis, tmp_path
    ) -> None:
        scorer = chunked(redis, Keys("x:"), tmp_path)
        assert windows(scorer.ready_chunks(segment(150), START_MS + 150 * S)) == [("", 0, 60)]
        assert windows(scorer.ready_chunks(segment(150), START_MS + 160 * S)) == [
            ("", 0, 60),
            (":1", 60, 150),
        ]

    def test_a_segment_shorter_than_one_chunk_is_not_scored(self, redis: Redis, tmp_path) -> None:
        assert (
            chunked(redis, Keys("x:"), tmp_path).ready_chunks(segment(50), START_MS + 99 * S) == []
        )

    def test_without_chunks_the_whole_ended_segment_is_one_reward(
        self, redis: Redis, tmp_path
    ) -> None:
        scorer = chunked(redis, Keys("x:"), tmp_path, chunks=False)
        assert scorer.ready_chunks(segment(None), START_MS + 500 * S) == []
        assert windows(scorer.ready_chunks(segment(150), START_MS + 160 * S)) == [("", 0, 150)]


async def test_online_chunks_then_racing_end_of_stream_passes_apply_each_chunk_once(
    redis: Redis, make_settings, tmp_path
) -> None:
    """Scored online mid-stream, then by three grace-0 passes at once, the bandit ends equal,
    bit for bit, to one pass over the ended stream: talk 0-5 min (5 chunks) and q_and_a
    5-20 min (15 chunks), 20 updates."""
    keys = make_settings().keys
    reference = Keys(f"{keys.prefix}ref:")
    await apply(redis, reference, ended_stream())
    assert await chunked(redis, reference, tmp_path, grace_s=0).score_ready("demo") == 20

    await apply(redis, keys, known_stream())  # 10 minutes: q_and_a still on air
    online = await chunked(redis, keys, tmp_path).score_ready("demo")
    now_s = (await redis.zscore(keys.analytics("demo").clock, "now") - START_MS) / S
    # talk's 5 chunks; q_and_a (on air since 300 s) has floor(lasted / 60) chunks so far, of
    # which all but the last are known not to be its last.
    assert online == 5 + (int(now_s - 300) // 60 - 1)
    await apply(redis, keys, ended_stream()[len(known_stream()) :])
    ends = [chunked(redis, keys, tmp_path, grace_s=0) for _ in range(3)]
    counts = await asyncio.gather(*(s.score_ready("demo", STREAM) for s in ends))
    assert online + sum(counts) == 20

    def bandit(k: Keys) -> ThompsonBandit:
        return ThompsonBandit(redis, k, "demo", ACTIVITIES)

    assert await bandit(keys).state() == await bandit(reference).state()
    tokens = [f"{STREAM}:{START_MS + 300 * S}:q_and_a"] + [
        f"{STREAM}:{START_MS + 300 * S}:q_and_a:{k}" for k in range(1, 15)
    ]
    assert await bandit(keys).rewards(tokens) == await bandit(reference).rewards(tokens)
    assert len(await bandit(keys).rewards(tokens)) == 15


class TestReadyAfter:
    """``ready_after`` names the first event time a segment yields one chunk more, so the loop
    can wait for it instead of looking every interval: checked against ``ready_chunks``
    second by second."""

    @staticmethod
    def first_more(scorer: SegmentScorer, seg: Segment, now_ms: int, horizon_ms: int) -> int | None:
        ready = len(scorer.ready_chunks(seg, now_ms))
        for at in range(now_ms + S, horizon_ms, S):
            if len(scorer.ready_chunks(seg, at)) > ready:
                return at
        return None

    @pytest.mark.parametrize("chunks", [True, False])
    @pytest.mark.parametrize("grace_s", [0, 5, 90])
    @pytest.mark.parametrize("end_s", [None, 50, 150, 300])
    def test_it_is_the_first_second_a_chunk_more_is_ready(
        self, redis: Redis, tmp_path, chunks: bool, grace_s: float, end_s: float | None
    ) -> None:
        scorer = chunked(redis, Keys("x:"), tmp_path, grace_s=grace_s, chunks=chunks)
        seg = segment(end_s)
        horizon = START_MS + 800 * S
        for now_s in range(0, 600, 7):
            now = START_MS + now_s * S
            if seg.end_ms is not None and now < seg.end_ms:
                continue  # an ended segment is only known once its end has passed
            said = scorer.ready_after(seg, now, len(scorer.ready_chunks(seg, now)))
            assert said == self.first_more(scorer, seg, now, horizon), now_s
