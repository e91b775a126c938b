"""At start the orchestrator restores each channel lacking Redis state from its own backup file."""

from __future__ import annotations

import json
from pathlib import Path

from redis.asyncio import Redis

from services.orchestrator.app import build_loop, seed_bandits
from services.orchestrator.claude import ClaudeAdvisor
from services.orchestrator.settings import OrchestratorSettings
from shared.bandit import ArmState, ThompsonBandit, channel_path


def entry(alpha: float) -> dict[str, object]:
    return {
        "arms": {"talk": {"alpha": alpha, "beta": 1.0, "updates": 1}},
        "priors": {"alpha": 1.0, "beta": 1.0},
        "discount": 1.0,
        "saved_at": "2026-02-27T10:30:00.000Z",
    }


async def test_each_channel_comes_back_from_its_own_file_or_the_old_single_file(
    redis: Redis, make_settings, tmp_path: Path
) -> None:
    path = tmp_path / "bandit_state.json"
    settings: OrchestratorSettings = make_settings(
        OrchestratorSettings,
        channels=["own", "legacy", "broken", "live"],
        bandit_state_path=str(path),
    )
    path.write_text(json.dumps({"channels": {"legacy": entry(3.0), "own": entry(9.0)}}))
    for channel, alpha in (("own", 5.0), ("live", 7.0)):
        channel_path(path, channel).parent.mkdir(exist_ok=True)
        channel_path(path, channel).write_text(json.dumps({"channels": {channel: entry(alpha)}}))
    channel_path(path, "broken").write_text("{not json")
    bandit = ThompsonBandit(redis, settings.keys, "live", settings.activities)
    await bandit.update("talk", 1.0)  # Redis has state for "live": not touched
    advisor = ClaudeAdvisor(
        api_key="", model="m", activities=settings.activities, timeout_s=1, max_retries=0
    )
    loop = build_loop(redis, settings, advisor)

    await seed_bandits(loop, settings)

    async def talk(channel: str) -> ArmState:
        return (await ThompsonBandit(redis, settings.keys, channel, settings.activities).state())[
            "talk"
        ]

    assert await talk("own") == ArmState(alpha=5.0, beta=1.0, updates=1)  # its file wins
    assert await talk("legacy") == ArmState(alpha=3.0, beta=1.0, updates=1)
    assert await talk("broken") == ArmState(alpha=1.0, beta=1.0, updates=0)  # logged, prior
    assert await talk("live") == ArmState(alpha=2.0, beta=1.0, updates=1)
