"""Dead letters of several partitions: named by partition, merged by time, filtered.

Each partition has its own ``events:{pNN}:dead``, and entry ids of two of them can
be equal (on a cluster, two nodes' clocks give them). These tests XADD dead
letters by hand, with chosen entry ids and rejection times, as the consumers of
two partitions would write them; ``test_dead_letters.py`` makes them through the
real consumer runner.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from services.ingest.main import parse_args
from shared.dead_letters import cli as dead_letters
from shared.dead_letters.entries import dead_id as qualified_id
from shared.events import ChatEvent, DeadLetter, dead_letter_fields, to_fields
from shared.keys import Keys, Stream
from shared.partitions import Partitions
from shared.settings import BaseServiceSettings

TS = datetime(2026, 2, 27, 10, 30, tzinfo=UTC)
GROUP = "analytics"
DEMO = Partitions().of("demo")
"""The partition of channel ``demo``."""
OTHER = next(f"ch{n}" for n in range(100) if Partitions().of(f"ch{n}") != DEMO)
"""A channel in another partition."""


def chat(n: int, channel: str = "demo") -> ChatEvent:
    return ChatEvent(id=f"c{n}", channel=channel, ts=TS, source="sim", user=f"u{n}", text=f"hi {n}")


async def dead_total(redis: Redis, keys: Keys) -> int:
    return sum([await redis.xlen(key) for key in keys.dead_streams()])


async def add_dead(
    redis: Redis, keys: Keys, event: ChatEvent, *, entry_id: str, ts: datetime = TS
) -> str:
    """XADD a dead letter of ``event`` (rejected from its chat stream) with ``entry_id``."""
    stream = keys.channel_stream(Stream.CHAT, event.channel)
    letter = DeadLetter(
        reason="handler failed 1 times: RuntimeError('boom')",
        stream=stream,
        entry_id="1-0",
        raw=json.dumps(to_fields(event)),
        group=GROUP,
        ts=ts,
    )
    partition = keys.partition_of_stream(stream)
    fields = dead_letter_fields(letter)
    await redis.xadd(keys.dead(partition), fields, id=entry_id)  # type: ignore[arg-type]
    return qualified_id(partition, entry_id)


async def cli(settings: BaseServiceSettings, *argv: str) -> tuple[int, str]:
    """Parse ``dead-letters *argv`` as the command line does and run it; (exit code, stdout)."""
    args = parse_args(["dead-letters", *argv])
    dead_letters.check_args(args)
    out = io.StringIO()
    code = await dead_letters.run(settings, args, out)
    return code, out.getvalue()


async def test_dead_letters_of_two_partitions_with_one_entry_id_are_named_by_partition(
    redis: Redis, make_settings: Callable[..., Any], key_prefix: str
) -> None:
    settings = make_settings()
    keys = settings.keys
    demo_dead = await add_dead(redis, keys, chat(1), entry_id="1772190000000-0")
    other_dead = await add_dead(redis, keys, chat(1, OTHER), entry_id="1772190000000-0")
    other = keys.partitions.of(OTHER)
    assert (demo_dead, other_dead) == (
        f"p{DEMO:02d}/1772190000000-0",
        f"p{other:02d}/1772190000000-0",
    )

    code, listed = await cli(settings, "list")
    assert code == 0 and f"{demo_dead}  from " in listed and f"{other_dead}  from " in listed

    code, out = await cli(settings, "requeue", "1772190000000-0")
    assert code == 1
    assert "not requeued 1772190000000-0: ambiguous: 2 partitions hold that id (" in out
    assert demo_dead in out and other_dead in out
    assert await dead_total(redis, keys) == 2

    code, out = await cli(settings, "requeue", other_dead)
    assert code == 0, out
    assert f"requeued {other_dead}: chat sim:c1 on {OTHER} " in out
    assert await redis.xlen(keys.channel_stream(Stream.CHAT, OTHER)) == 1
    assert await redis.xlen(keys.channel_stream(Stream.CHAT, "demo")) == 0

    code, out = await cli(settings, "requeue", "1772190000000-0")  # one partition holds it now
    assert code == 0 and f"requeued {demo_dead}: chat sim:c1 on demo " in out, out
    assert await dead_total(redis, keys) == 0


async def test_list_merges_the_partitions_by_rejection_time_and_filters_them(
    redis: Redis, make_settings: Callable[..., Any], key_prefix: str
) -> None:
    settings = make_settings()
    keys = settings.keys
    minute = timedelta(minutes=1)
    # entry ids in the opposite order of the rejection times: two nodes' clocks disagree
    first = await add_dead(redis, keys, chat(1, OTHER), entry_id="3000-0", ts=TS)
    second = await add_dead(redis, keys, chat(2), entry_id="2000-0", ts=TS + minute)
    third = await add_dead(redis, keys, chat(3), entry_id="2001-0", ts=TS + 2 * minute)
    other = keys.partitions.of(OTHER)

    code, out = await cli(settings, "list")
    assert code == 0
    assert out.startswith(f"3 dead letters, newest first (the 64 {key_prefix}events:{{pNN}}:dead")
    assert out.index(third) < out.index(second) < out.index(first)

    code, out = await cli(settings, "list", "--limit", "2")
    assert third in out and second in out and first not in out

    code, out = await cli(settings, "list", "--channel", OTHER)
    assert out.startswith(f"1 dead letters of channel {OTHER}, newest first ")
    assert f"({keys.dead(other)} holds 1)" in out and first in out and second not in out

    code, out = await cli(settings, "list", "--partition", str(DEMO))
    assert out.startswith(f"2 dead letters in partition {DEMO}, newest first ")
    assert f"({keys.dead(DEMO)} holds 2)" in out and first not in out

    code, out = await cli(settings, "requeue", "--all", "--channel", "demo", "--dry-run")
    assert code == 0 and out.index(second) < out.index(third) and first not in out


async def test_an_entry_whose_channel_is_in_another_partition_is_not_requeued_there(
    redis: Redis, make_settings: Callable[..., Any], key_prefix: str
) -> None:
    settings = make_settings()
    keys = settings.keys
    stranger = chat(1, OTHER)  # as if PARTITIONS had changed since it was published
    letter = DeadLetter(
        reason="r", stream=keys.stream(Stream.CHAT, DEMO), entry_id="1-0",
        raw=json.dumps(to_fields(stranger)), group=GROUP, ts=TS,
    )  # fmt: skip
    entry_id = await redis.xadd(keys.dead(DEMO), dead_letter_fields(letter))  # type: ignore[arg-type]

    code, out = await cli(settings, "requeue", qualified_id(DEMO, str(entry_id)))

    other = keys.partitions.of(OTHER)
    assert code == 1
    assert f"channel {OTHER!r} belongs to partition {other}, not {DEMO}" in out
    assert await redis.xlen(keys.dead(DEMO)) == 1
    assert not await redis.exists(keys.stream(Stream.CHAT, DEMO))


async def test_a_partition_past_partitions_is_a_usage_error(
    make_settings: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings()
    code, out = await cli(settings, "list", "--partition", "64")
    assert code == 2 and out == ""
    assert "no partition 64: PARTITIONS is 64 (0 to 63)" in capsys.readouterr().err
