"""The bandit's JSON backup: one file per channel, the single file of old still read."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from redis.asyncio import Redis

from shared.bandit import (
    DEFAULT_ARMS,
    ArmState,
    BanditStateError,
    ThompsonBandit,
    channel_path,
)
from shared.keys import Keys

ARMS = list(DEFAULT_ARMS)
Factory = Callable[..., ThompsonBandit]


@pytest.fixture
def keys(key_prefix: str) -> Keys:
    return Keys(key_prefix)


@pytest.fixture
def make_bandit(redis: Redis, keys: Keys) -> Factory:
    """A bandit on the test Redis (channel ``demo`` unless told), seeded rng by default."""

    def build(channel: str = "demo", **options: Any) -> ThompsonBandit:
        options.setdefault("rng", np.random.default_rng(0))
        return ThompsonBandit(redis, keys, channel, ARMS, **options)

    return build


async def give(bandit: ThompsonBandit, arm: str, rewards: list[float]) -> None:
    for reward in rewards:
        await bandit.update(arm, reward)


def saved(path: Path, channel: str) -> dict[str, Any]:
    """The channel's entry in its own backup file."""
    entry: dict[str, Any] = json.loads(channel_path(path, channel).read_text())["channels"][channel]
    return entry


async def test_save_and_load_round_trip(
    make_bandit: Factory, redis: Redis, keys: Keys, tmp_path: Path
) -> None:
    path = tmp_path / "nested" / "bandit_state.json"
    bandit = make_bandit(prior_alpha=1.0, prior_beta=1.0, discount=0.99)
    await give(bandit, "gameplay", [1.0, 0.3])
    await bandit.update("talk", 0.0)
    before = await bandit.state()
    await bandit.save(path)

    assert channel_path(path, "demo") == tmp_path / "nested" / "bandit_state" / "demo.json"
    entry = saved(path, "demo")
    assert entry["arms"]["gameplay"] == {
        "alpha": before["gameplay"].alpha,
        "beta": before["gameplay"].beta,
        "updates": 2,
    }
    assert entry["priors"] == {"alpha": 1.0, "beta": 1.0}
    assert entry["discount"] == 0.99
    assert entry["saved_at"].endswith("Z")
    assert not list(channel_path(path, "demo").parent.glob("*.tmp"))

    await redis.delete(keys.bandit("demo"))
    loaded = await ThompsonBandit.load(path, redis, keys, "demo", ARMS, discount=0.99)
    assert await loaded.state() == before
    assert loaded.discount == 0.99


async def test_load_overwrites_what_redis_holds(
    make_bandit: Factory, keys: Keys, redis: Redis, tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    bandit = make_bandit()
    await bandit.update("talk", 1.0)
    await bandit.save(path)
    await give(bandit, "music", [1.0] * 5)
    loaded = await ThompsonBandit.load(path, redis, keys, "demo", ARMS)
    state = await loaded.state()
    assert state["talk"] == ArmState(alpha=2.0, beta=1.0, updates=1)
    assert state["music"] == ArmState(alpha=1.0, beta=1.0, updates=0)


async def test_each_channel_saves_only_its_own_file(make_bandit: Factory, tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    demo, other = make_bandit("demo"), make_bandit("other")
    await demo.update("talk", 1.0)
    await other.update("music", 0.0)
    await asyncio.gather(demo.save(path), other.save(path))
    other_file = channel_path(path, "other")
    other_before = (other_file.read_text(), other_file.stat().st_ino)

    await demo.update("talk", 1.0)
    await demo.save(path)

    assert saved(path, "demo")["arms"]["talk"]["alpha"] == 3.0
    assert (other_file.read_text(), other_file.stat().st_ino) == other_before
    assert saved(path, "other")["arms"]["music"] == {"alpha": 1.0, "beta": 2.0, "updates": 1}
    assert sorted(p.name for p in other_file.parent.iterdir()) == ["demo.json", "other.json"]


async def test_a_channel_name_unsafe_as_a_file_name_gets_a_file_of_its_own(
    make_bandit: Factory, tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    for channel in ("../up", "._up"):
        await make_bandit(channel).save(path)
    files = {channel_path(path, "../up"), channel_path(path, "._up")}
    assert len(files) == 2 and all(f.parent == tmp_path / "state" for f in files)
    assert all(f.exists() for f in files)


async def test_seed_if_empty_seeds_only_an_empty_channel(
    make_bandit: Factory, tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    source = make_bandit("demo")
    await source.update("q_and_a", 1.0)
    await source.save(path)

    empty = make_bandit("fresh")
    assert not await empty.seed_if_empty(path)  # the backup has no "fresh" channel
    assert (await empty.state())["q_and_a"] == ArmState(alpha=1.0, beta=1.0)

    await source.update("q_and_a", 1.0)  # Redis now differs from the file
    assert not await source.seed_if_empty(path)
    assert (await source.state())["q_and_a"].alpha == 3.0

    await source._redis.delete(source._key)
    assert await source.seed_if_empty(path)
    assert (await source.state())["q_and_a"] == ArmState(alpha=2.0, beta=1.0, updates=1)


def old_single_file(path: Path, channels: dict[str, float]) -> None:
    """A backup in the earlier format: every channel in the one file at ``path``."""
    entry = {
        "priors": {"alpha": 1.0, "beta": 1.0},
        "discount": 1.0,
        "saved_at": "2026-02-27T10:30:00.000Z",
    }
    body = {
        channel: entry | {"arms": {"talk": {"alpha": alpha, "beta": 1.0, "updates": 1}}}
        for channel, alpha in channels.items()
    }
    path.write_text(json.dumps({"channels": body}))


async def test_the_single_file_of_earlier_versions_is_still_read(
    make_bandit: Factory, redis: Redis, keys: Keys, tmp_path: Path
) -> None:
    path = tmp_path / "bandit_state.json"
    old_single_file(path, {"demo": 4.0, "other": 6.0})
    demo, other = make_bandit("demo"), make_bandit("other")
    assert await demo.seed_if_empty(path) and await other.seed_if_empty(path)
    assert (await demo.state())["talk"] == ArmState(alpha=4.0, beta=1.0, updates=1)

    await demo.update("talk", 1.0)
    await demo.save(path)  # from now on demo's own file wins; the old file is left alone
    await redis.delete(keys.bandit("demo"), keys.bandit("other"))
    assert await demo.seed_if_empty(path) and await other.seed_if_empty(path)
    assert (await demo.state())["talk"] == ArmState(alpha=5.0, beta=1.0, updates=2)
    assert (await other.state())["talk"] == ArmState(alpha=6.0, beta=1.0, updates=1)
    assert set(json.loads(path.read_text())["channels"]) == {"demo", "other"}
    loaded = await ThompsonBandit.load(path, redis, keys, "other", ARMS)
    assert (await loaded.state())["talk"].alpha == 6.0


async def test_missing_file_gives_false_or_a_clear_error_without_touching_redis(
    make_bandit: Factory, redis: Redis, keys: Keys, tmp_path: Path
) -> None:
    bandit = make_bandit()
    await bandit.update("talk", 1.0)
    path = tmp_path / "absent.json"
    assert not await bandit.seed_if_empty(path)
    with pytest.raises(BanditStateError, match=r"absent\.json: cannot read"):
        await ThompsonBandit.load(path, redis, keys, "demo", ARMS)
    await bandit.save(tmp_path / "state.json")
    with pytest.raises(BanditStateError, match="no bandit state for channel 'nobody'"):
        await ThompsonBandit.load(tmp_path / "state.json", redis, keys, "nobody", ARMS)
    assert (await bandit.state())["talk"] == ArmState(alpha=2.0, beta=1.0, updates=1)
    assert not await redis.exists(keys.bandit("nobody"))


CORRUPT = [
    "{not json",
    '{"channels": {"demo": {"arms": {"talk": {"alpha": -1, "beta": 1}}}}}',
    '{"channels": {"demo": {"arms": {}, "priors": {"alpha": 1, "beta": 1}, '
    '"discount": 2, "saved_at": "x"}}}',
]


@pytest.mark.parametrize("content", CORRUPT)
@pytest.mark.parametrize("which", ["channel file", "single file of old"])
async def test_corrupt_file_gives_a_clear_error_without_touching_redis(
    make_bandit: Factory, redis: Redis, keys: Keys, tmp_path: Path, content: str, which: str
) -> None:
    path = tmp_path / "state.json"
    target = channel_path(path, "demo") if which == "channel file" else path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content)
    bandit = make_bandit()
    with pytest.raises(BanditStateError, match="not a valid bandit state file"):
        await bandit.seed_if_empty(path)
    await bandit.update("talk", 1.0)
    with pytest.raises(BanditStateError, match="not a valid bandit state file"):
        await ThompsonBandit.load(path, redis, keys, "demo", ARMS)
    assert (await bandit.state())["talk"] == ArmState(alpha=2.0, beta=1.0, updates=1)


async def test_save_over_a_corrupt_file_keeps_it_aside(
    make_bandit: Factory, tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    own = channel_path(path, "demo")
    own.parent.mkdir(parents=True)
    own.write_text("{not json")
    await make_bandit().save(path)
    assert own.with_name("demo.json.corrupt").read_text() == "{not json"
    assert "talk" in saved(path, "demo")["arms"]
