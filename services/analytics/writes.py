"""A batch's raw-state writes, aggregated in Python and applied by one Lua script.

Every analytics write commutes, so a batch's writes can be merged before they are
sent: counters to the same field are summed, maxima folded, set members
collected per key. Paid events are the one conditional write: the record is set
with HSETNX and, only if that set it, indexed by time and added to its minute's
totals (``paid_minutes``), so a replayed event is counted once; this still
commutes, as every copy of an event carries the same record. The merged writes
travel as one JSON argument to one script, queued on the runner's MULTI with
the XACKs. Against one redis-py command per write this cuts the client's packing
and parsing work, which was most of the consumer's CPU (``make bench``, section
``analytics-consume``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript

from shared.redis_client import queue_script

APPLY_SCRIPT = """
local ops = cjson.decode(ARGV[1])
local function chunked(command, key, flag, args, step)
  for first = 1, #args, step do
    local last = math.min(first + step - 1, #args)
    if flag then
      redis.call(command, key, flag, unpack(args, first, last))
    else
      redis.call(command, key, unpack(args, first, last))
    end
  end
end
for _, op in ipairs(ops) do
  local kind, key, args = op[1], KEYS[op[2]], op[3]
  if kind == 'zadd' then chunked('ZADD', key, nil, args, 1000)
  elseif kind == 'zadd_max' then chunked('ZADD', key, 'GT', args, 1000)
  elseif kind == 'zadd_min' then chunked('ZADD', key, 'LT', args, 1000)
  elseif kind == 'hset' then chunked('HSET', key, nil, args, 1000)
  elseif kind == 'hincrby' then
    for i = 1, #args, 2 do redis.call('HINCRBY', key, args[i], args[i + 1]) end
  elseif kind == 'zincrby' then
    for i = 1, #args, 2 do redis.call('ZINCRBY', key, args[i + 1], args[i]) end
  elseif kind == 'paid' then
    -- key: paid_data; args: paid index, paid_minutes index, then per event
    -- {member, ts ms, JSON, field, amount, ...}: indexed and counted only if new.
    local index, minutes = KEYS[args[1]], KEYS[args[2]]
    local scores, added = {}, {}
    for i = 3, #args do
      local e = args[i]
      if redis.call('HSETNX', key, e[1], e[3]) == 1 then
        scores[#scores + 1] = e[2]
        scores[#scores + 1] = e[1]
        for j = 4, #e, 2 do added[e[j]] = (added[e[j]] or 0) + tonumber(e[j + 1]) end
      end
    end
    chunked('ZADD', index, nil, scores, 1000)
    for field, amount in pairs(added) do
      redis.call('HINCRBY', minutes, field, string.format('%.0f', amount))
    end
  elseif kind == 'clock' then
    -- args: the batch's latest ts, its latest stream_started ts ('' if none), both ms.
    -- A stream_started later than the one the clock began with starts a new clock at
    -- its ts, even below the old "now"; events before the clock's start never move it.
    local latest, start = tonumber(args[1]), args[2]
    local began = tonumber(redis.call('ZSCORE', key, 'started') or '-1')
    if start ~= '' and tonumber(start) > began then
      began = tonumber(start)
      redis.call('ZADD', key, began, 'started', began, 'now')
    end
    if latest >= began then redis.call('ZADD', key, 'GT', latest, 'now') end
  elseif kind == 'incrby' then redis.call('INCRBY', key, args[1])
  elseif kind == 'expire' then redis.call('EXPIRE', key, args[1])
  end
end
return #ops
"""


@dataclass(frozen=True)
class PaidKeys:
    """The three keys one paid event is written to (see ``shared.keys.AnalyticsKeys``)."""

    data: str
    index: str
    minutes: str


@dataclass(frozen=True)
class PaidWrite:
    """One paid event: its member, ``ts`` (epoch ms), JSON record and minute increments."""

    member: str
    ts_ms: int
    record: str
    increments: list[tuple[str, int]]

    def args(self) -> list[str]:
        """``[member, ts, JSON, field, amount, ...]`` as the script reads an event."""
        flat = [x for field, amount in self.increments for x in (field, str(amount))]
        return [self.member, str(self.ts_ms), self.record, *flat]


class BatchWrites:
    """Collects commutative writes; :meth:`queue` sends them as one script call."""

    def __init__(self) -> None:
        self._zadd: dict[str, dict[str, int]] = defaultdict(dict)
        self._zadd_max: dict[str, dict[str, int]] = defaultdict(dict)
        self._zadd_min: dict[str, dict[str, int]] = defaultdict(dict)
        self._hset: dict[str, dict[str, str]] = defaultdict(dict)
        self._hincrby: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._zincrby: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._incrby: dict[str, int] = defaultdict(int)
        self._expire: dict[str, int] = {}
        self._clock: dict[str, tuple[int, int | None]] = {}
        self._paid: dict[PaidKeys, dict[str, PaidWrite]] = defaultdict(dict)

    def zadd(self, key: str, member: str, score: int) -> None:
        """ZADD: ``member`` at ``score``."""
        self._zadd[key][member] = score

    def zadd_max(self, key: str, member: str, score: int) -> None:
        """ZADD GT: ``member``'s score becomes the largest seen."""
        known = self._zadd_max[key].get(member)
        self._zadd_max[key][member] = score if known is None else max(known, score)

    def zadd_min(self, key: str, member: str, score: int) -> None:
        """ZADD LT: ``member``'s score becomes the smallest seen."""
        known = self._zadd_min[key].get(member)
        self._zadd_min[key][member] = score if known is None else min(known, score)

    def hset(self, key: str, field: str, value: str) -> None:
        """HSET ``field`` to ``value``."""
        self._hset[key][field] = value

    def hincrby(self, key: str, field: str, amount: int) -> None:
        """HINCRBY ``field`` by ``amount``."""
        self._hincrby[key][field] += amount

    def zincrby(self, key: str, member: str, amount: int) -> None:
        """ZINCRBY ``member`` by ``amount``."""
        self._zincrby[key][member] += amount

    def incrby(self, key: str, amount: int) -> None:
        """INCRBY by ``amount``."""
        self._incrby[key] += amount

    def paid(self, keys: PaidKeys, write: PaidWrite) -> None:
        """HSETNX the record; only if new, ZADD it and HINCRBY its minute (first copy wins)."""
        self._paid[keys].setdefault(write.member, write)

    def clock(self, key: str, latest_ms: int, started_ms: int | None) -> None:
        """Advance the channel clock to ``latest_ms``; a later ``started_ms`` starts a new one.

        See ``shared.keys.AnalyticsKeys.clock``: the clock belongs to the current stream.
        """
        known_latest, known_start = self._clock.get(key, (latest_ms, started_ms))
        if known_start is None or (started_ms is not None and started_ms > known_start):
            known_start = started_ms
        self._clock[key] = (max(known_latest, latest_ms), known_start)

    def expire(self, key: str, ttl_s: int) -> None:
        """EXPIRE after ``ttl_s`` seconds."""
        self._expire[key] = ttl_s

    def packed(self) -> tuple[list[str], str]:
        """KEYS (each key once) and the JSON of the operations that refer to them."""
        keys: dict[str, int] = {}
        ops: list[list[object]] = []

        def index(key: str) -> int:
            return keys.setdefault(key, len(keys) + 1)

        def add(kind: str, key: str, args: list[Any]) -> None:
            ops.append([kind, index(key), args])

        for kind, table in (
            ("zadd", self._zadd),
            ("zadd_max", self._zadd_max),
            ("zadd_min", self._zadd_min),
        ):
            for key, scores in table.items():
                add(kind, key, [x for m, s in scores.items() for x in (str(s), m)])
        for kind, fields in (
            ("hset", self._hset),
            ("hincrby", self._hincrby),
            ("zincrby", self._zincrby),
        ):
            for key, values in fields.items():
                add(kind, key, [x for f, v in values.items() for x in (f, str(v))])
        for paid, writes in self._paid.items():
            events = [w.args() for w in writes.values()]
            add("paid", paid.data, [index(paid.index), index(paid.minutes), *events])
        for key, (latest, start) in self._clock.items():
            add("clock", key, [str(latest), "" if start is None else str(start)])
        for key, amount in self._incrby.items():
            add("incrby", key, [str(amount)])
        for key, ttl in self._expire.items():
            add("expire", key, [str(ttl)])
        return list(keys), json.dumps(ops, ensure_ascii=False)

    async def queue(self, tx: Pipeline, script: AsyncScript | None = None) -> None:
        """Queue the script call applying every write on ``tx`` (a MULTI pipeline);
        without a registered ``script``, its text (sent as EVAL)."""
        keys, ops = self.packed()
        if keys:
            await queue_script(tx, script or APPLY_SCRIPT, keys, [ops])


def apply_script(redis: Redis) -> AsyncScript:
    """The registered script that applies a :class:`BatchWrites`."""
    return redis.register_script(APPLY_SCRIPT)
