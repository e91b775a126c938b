"""Recording the streams to JSON Lines and replaying them: fidelity, dedupe, bad lines, pace.

Every partition's streams are recorded; a recording names kinds and channels, not
partitions, so it replays into a deployment with another ``PARTITIONS`` as well.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from services.ingest.settings import IngestSettings
from services.ingest.sources.audience import channel_rng, new_state, simulate
from services.ingest.sources.recording import entry_line, record, replay
from services.ingest.sources.scenario import default_scenario
from shared.events import ChatEvent, DonationEvent, EventBase, to_fields
from shared.keys import EVENT_STREAMS, Stream
from shared.partitions import Partitions
from shared.publisher import Publisher

T0 = datetime(2026, 2, 27, 18, 0, tzinfo=UTC)
MakeSettings = Callable[..., IngestSettings]
OTHER = next(f"ch{n}" for n in range(100) if Partitions().of(f"ch{n}") != Partitions().of("demo"))
"""A channel in another partition than ``demo``."""


def sim_events(settings: IngestSettings, duration_s: float = 1200) -> list[EventBase]:
    """A short simulated broadcast with every kind of event (raids made frequent)."""
    scenario = default_scenario().model_copy(update={"raids_per_hour": 30.0})
    rng = channel_rng(4, "demo")
    state = new_state(scenario, settings, "demo", T0, rng)
    return simulate(state, rng, duration_s, 1.0)


def chat(n: int, ts: datetime, channel: str = "demo") -> ChatEvent:
    return ChatEvent(id=f"c{n}", channel=channel, ts=ts, source="twitch", user=f"u{n}", text="hi")


async def all_fields(
    redis: Redis, settings: IngestSettings
) -> dict[tuple[str, str], list[dict[str, str]]]:
    """The fields of every entry of every partition's event streams, by (kind, channel),
    each in entry order; checks every entry is on its channel's partition."""
    found: dict[tuple[str, str], list[dict[str, str]]] = {}
    for key in settings.keys.event_streams():
        entries: list[Any] = list(await redis.xrange(key) or [])
        kind = settings.keys.kind_of(key)
        for _entry_id, fields in entries:
            assert settings.keys.channel_stream(kind, fields["channel"]) == key
            found.setdefault((kind.value, fields["channel"]), []).append(dict(fields))
    return found


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line if line.endswith("\n") else line + "\n" for line in lines))
    return path


async def test_record_then_replay_into_a_fresh_prefix_reproduces_every_entry(
    redis: Redis, make_settings: MakeSettings, key_prefix: str, tmp_path: Path
) -> None:
    settings = make_settings(IngestSettings)
    tip = DonationEvent(
        id="sl-1", channel="demo", ts=T0 + timedelta(seconds=5), source="streamlabs",
        user="ana", amount="12.34", currency="EUR", message="é ✓ gg",
    )  # fmt: skip
    elsewhere = [chat(n, T0 + timedelta(seconds=n), OTHER) for n in range(20)]
    # Published in ts order, as a live source would: replay re-sorts by ts.
    events = sorted([*sim_events(settings), tip, *elsewhere], key=lambda event: event.ts)
    await Publisher(redis, settings).publish_many(events)
    demo = settings.keys.partitions.of("demo")
    await redis.xadd(settings.keys.dead(demo), {"reason": "not an event"})
    path = tmp_path / "rec.jsonl"

    written = await record(redis, settings, path)

    assert written == len(events)  # the dead-letter entry is not recorded
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert set(first) == {"stream", "entry_id", "fields"} and first["stream"] == "chat"
    # another prefix and another partitioning: the file names kinds and channels only
    fresh = make_settings(IngestSettings, redis_key_prefix=f"{key_prefix}copy:", partitions=7)
    result = await replay(redis, fresh, path, speed=0)
    assert (result.published, result.duplicates, result.skipped) == (len(events), 0, 0)
    original, copy = await all_fields(redis, settings), await all_fields(redis, fresh)
    assert copy == original
    assert {kind for kind, _channel in copy} == {k.value for k in EVENT_STREAMS}
    assert to_fields(tip) in copy[("donation", "demo")]
    assert len(copy[("chat", OTHER)]) == len(elsewhere)


async def test_replay_into_the_same_redis_is_fully_deduplicated(
    redis: Redis, make_settings: MakeSettings, tmp_path: Path
) -> None:
    settings = make_settings(IngestSettings)
    events = sim_events(settings, duration_s=300)
    await Publisher(redis, settings).publish_many(events)
    path = tmp_path / "rec.jsonl"
    await record(redis, settings, path)
    before = await all_fields(redis, settings)

    result = await replay(redis, settings, path, speed=float("inf"))

    assert (result.published, result.duplicates, result.lines) == (0, len(events), len(events))
    assert await all_fields(redis, settings) == before


async def test_bad_lines_are_skipped_and_reported_with_their_numbers(
    redis: Redis, make_settings: MakeSettings, tmp_path: Path
) -> None:
    settings = make_settings(IngestSettings)
    good = [to_fields(chat(n, T0 + timedelta(seconds=n))) for n in range(3)]
    bad_amount = to_fields(DonationEvent(
        id="d1", channel="demo", ts=T0, source="sim", user="x", amount="1",
    )) | {"amount": "-5"}  # fmt: skip
    path = write_lines(tmp_path / "mixed.jsonl", [
        entry_line("chat", "1-0", good[0]),                          # 1 ok
        "this is not json",                                          # 2
        entry_line("chat", "2-0", good[1]),                          # 3 ok
        entry_line("donation", "3-0", bad_amount),                   # 4 breaks the contract
        "",                                                          # 5 blank: ignored
        json.dumps({"stream": "chat", "fields": {"type": "nope"}}),  # 6 unknown type
        entry_line("donation", "4-0", good[2]),                      # 7 chat on donation stream
        "[1, 2]",                                                    # 8 not an object
    ])  # fmt: skip

    result = await replay(redis, settings, path, speed=0)

    assert [bad.line_no for bad in result.bad_lines] == [2, 4, 6, 7, 8]
    assert "amount" in result.bad_lines[1].reason and "not JSON" in result.bad_lines[0].reason
    assert (result.lines, result.published, result.skipped) == (7, 2, 5)
    assert await redis.xlen(settings.keys.channel_stream(Stream.CHAT, "demo")) == 2


async def test_replay_orders_by_ts_and_paces_by_gaps_over_speed(
    redis: Redis, make_settings: MakeSettings, tmp_path: Path
) -> None:
    settings = make_settings(IngestSettings)
    events = [chat(n, T0 + timedelta(seconds=n)) for n in (2, 0, 1)]
    path = write_lines(
        tmp_path / "paced.jsonl", [entry_line("chat", "0-1", to_fields(e)) for e in events]
    )

    began = time.monotonic()
    result = await replay(redis, settings, path, speed=2.0)
    elapsed_s = time.monotonic() - began

    assert result.published == 3
    assert 0.8 <= elapsed_s < 5, elapsed_s  # 2 s of ts gaps at 2x
    chat_key = settings.keys.channel_stream(Stream.CHAT, "demo")
    entries: list[Any] = list(await redis.xrange(chat_key) or [])
    assert [fields["id"] for _entry_id, fields in entries] == ["c0", "c1", "c2"]


@pytest.mark.parametrize("speed", [0.0, float("inf"), 1e9])
async def test_a_long_recording_replays_fast_at_huge_speed(
    redis: Redis, make_settings: MakeSettings, tmp_path: Path, speed: float
) -> None:
    settings = make_settings(IngestSettings)
    events = sim_events(settings, duration_s=3600)
    path = write_lines(
        tmp_path / "hour.jsonl", [entry_line(e.stream.value, "0-1", to_fields(e)) for e in events]
    )
    began = time.monotonic()
    result = await replay(redis, settings, path, speed=speed)
    assert time.monotonic() - began < 5
    assert result.published == len(events)


async def test_replay_refuses_a_negative_speed(
    redis: Redis, make_settings: MakeSettings, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="speed"):
        await replay(redis, make_settings(IngestSettings), tmp_path / "x.jsonl", speed=-1)


async def test_follow_keeps_recording_new_entries_of_every_partition_until_stopped(
    redis: Redis, make_settings: MakeSettings, tmp_path: Path
) -> None:
    settings = make_settings(IngestSettings)
    publisher = Publisher(redis, settings)
    await publisher.publish_many([chat(n, T0) for n in range(3)])
    path = tmp_path / "live.jsonl"
    stop = asyncio.Event()
    task = asyncio.create_task(record(redis, settings, path, follow=True, stop=stop))
    try:
        await asyncio.sleep(0.3)
        await publisher.publish_many([chat(n, T0) for n in range(3, 8)])
        await publisher.publish_many([chat(n, T0, OTHER) for n in range(8, 10)])
        deadline = time.monotonic() + 5
        while len(path.read_text().splitlines()) < 10:
            assert time.monotonic() < deadline, "followed entries never written"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        written = await asyncio.wait_for(task, timeout=3)
    lines = [json.loads(line)["fields"] for line in path.read_text().splitlines()]
    assert written == 10
    assert [f["id"] for f in lines if f["channel"] == "demo"] == [f"c{n}" for n in range(8)]
    assert [f["id"] for f in lines if f["channel"] == OTHER] == ["c8", "c9"]
