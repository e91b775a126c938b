"""The learning benchmark runs end to end and produces its table (no learning goal asserted).

Learning goals and figures are measured by ``make bench`` (section ``learning``); this
only checks, on two audiences and one-hour streams, that every policy runs through the
real code paths and lands in the table.
"""

from __future__ import annotations

import pytest

from tools.bench_learning import POLICIES, audience, bench_learning


def test_audiences_have_one_best_activity_ahead_by_the_drawn_gap() -> None:
    for seed in range(20):
        crowd = audience(seed)
        rates = {
            name: b.chat_msgs_per_min_per_100_viewers
            for name, b in crowd.scenario.activities.items()
        }
        ranked = sorted(rates, key=lambda name: -rates[name])
        assert ranked[0] == crowd.best
        assert rates[ranked[0]] / rates[ranked[1]] == pytest.approx(1 + crowd.gap)
        assert 0.15 <= crowd.gap <= 0.40


@pytest.mark.slow
def test_the_benchmark_runs_every_policy_and_writes_its_table() -> None:
    section = bench_learning(audiences=2, hours=1, workers=1, draw=False)
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == list(POLICIES)
    assert "Goals for `ours`" in section
