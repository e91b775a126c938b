"""Requeueing dead letters: validated, added back and removed from ``events:{pNN}:dead`` atomically.

What is checked, why the publisher's dedupe is bypassed, and how one original
entry rejected by several groups is requeued once: see the package doc
(:mod:`shared.dead_letters`). A dead letter and the stream it goes back to are in
one partition (same hash tag), so the script touches one Redis Cluster slot.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from redis.asyncio import Redis

from shared.dead_letters.entries import (
    DeadEntry,
    Selection,
    check,
    consumer_groups,
    parse_dead_id,
    read_all,
)
from shared.events import EventBase, flat_fields
from shared.settings import BaseServiceSettings

REQUEUE_SCRIPT = """
-- KEYS[1] the partition's dead-letter stream; KEYS[2] the stream the entry came from (same tag)
-- ARGV[1] MAXLEN ~ of KEYS[2]; ARGV[2] JSON [name, value, ...]; ARGV[3] the dead letter
-- requeued; ARGV[4..] other dead letters of the same original entry (other groups)
if redis.call('XDEL', KEYS[1], ARGV[3]) == 0 then
  return false
end
for i = 4, #ARGV do
  redis.call('XDEL', KEYS[1], ARGV[i])
end
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', unpack(cjson.decode(ARGV[2])))
"""


class Status(Enum):
    """What requeueing did (or, in a dry run, would do) with one dead letter."""

    REQUEUED = "requeued"
    MERGED = "merged"
    """Removed along with another dead letter of the same original entry."""
    FAILED = "failed"


@dataclass(frozen=True)
class Outcome:
    """The result for one dead letter."""

    dead_id: str
    status: Status
    stream: str = ""
    detail: str = ""
    """Why it was not requeued (FAILED), or the dead letter it went with (MERGED)."""
    event: EventBase | None = None
    new_id: str = ""
    removed_with_it: tuple[str, ...] = ()
    readers: tuple[str, ...] = ()
    """Consumer groups on the stream; the copy is delivered to each."""
    accepted_by: tuple[str, ...] = ()
    """Groups on the stream that did not reject the original, so may have applied it."""


@dataclass
class RequeueReport:
    """Every outcome of one ``requeue`` call, in the order handled."""

    dry_run: bool
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, status: Status) -> int:
        """How many outcomes have ``status``."""
        return sum(outcome.status is status for outcome in self.outcomes)

    @property
    def exit_code(self) -> int:
        """0 when nothing was left behind, 1 otherwise."""
        return 1 if self.count(Status.FAILED) else 0


async def requeue(
    redis: Redis,
    settings: BaseServiceSettings,
    ids: Sequence[str] | None = None,
    *,
    selection: Selection | None = None,
    dry_run: bool = False,
) -> RequeueReport:
    """Requeue the dead letters ``ids`` (None: every ``selection``'s, all by default).

    An id is ``p07/1772190000123-0``, or a plain entry id when one partition alone
    holds it. See the module doc for what is checked and how the write is atomic.
    """
    keys = settings.keys
    selection = selection or Selection()
    everything = await read_all(redis, keys, _partitions_to_read(ids, selection, settings))
    same_original: defaultdict[tuple[str, str], list[DeadEntry]] = defaultdict(list)
    for dead in everything:
        if dead.stream and dead.entry_id:
            same_original[dead.original].append(dead)
    if ids is None:
        selected: list[DeadEntry | Outcome] = [e for e in everything if selection.matches(e, keys)]
    else:
        selected = _resolve(list(dict.fromkeys(ids)), everything)
    script = redis.register_script(REQUEUE_SCRIPT)
    report = RequeueReport(dry_run=dry_run)
    handled: dict[tuple[str, str], str] = {}  # original entry -> dead letter requeued for it
    for entry in selected:
        if isinstance(entry, Outcome):
            report.outcomes.append(entry)
        elif entry.original in handled:
            first = handled[entry.original]
            report.outcomes.append(
                Outcome(entry.dead_id, Status.MERGED, stream=entry.stream, detail=first)
            )
        else:
            outcome = await _requeue_one(redis, settings, script, entry, same_original, dry_run)
            if outcome.status is Status.REQUEUED:
                handled[entry.original] = entry.dead_id
            report.outcomes.append(outcome)
    return report


def _partitions_to_read(
    ids: Sequence[str] | None, selection: Selection, settings: BaseServiceSettings
) -> list[int]:
    """The selection's partitions, or those the ids name (all of them for a plain id)."""
    if ids is None:
        return selection.partitions(settings.keys)
    named: set[int] = set()
    for text in ids:
        try:
            partition, _ = parse_dead_id(text)
        except ValueError:
            continue
        if partition is None:
            return list(settings.partitioning.all())
        if partition in settings.partitioning.all():
            named.add(partition)
    return sorted(named)


def _resolve(ids: Sequence[str], everything: Sequence[DeadEntry]) -> list[DeadEntry | Outcome]:
    """Each id's dead letter, or a FAILED outcome saying why it names none."""
    by_plain: defaultdict[str, list[DeadEntry]] = defaultdict(list)
    for entry in everything:
        by_plain[entry.dead_entry_id].append(entry)
    resolved: list[DeadEntry | Outcome] = []
    for text in ids:
        try:
            partition, entry_id = parse_dead_id(text)
        except ValueError as error:
            resolved.append(Outcome(text, Status.FAILED, detail=str(error)))
            continue
        found = [e for e in by_plain[entry_id] if partition in (None, e.partition)]
        if not found:
            resolved.append(Outcome(text, Status.FAILED, detail="no such dead letter"))
        elif len(found) > 1:
            names = ", ".join(e.dead_id for e in found)
            detail = f"ambiguous: {len(found)} partitions hold that id ({names}); give one of them"
            resolved.append(Outcome(text, Status.FAILED, detail=detail))
        else:
            resolved.append(found[0])
    return resolved


async def _requeue_one(
    redis: Redis,
    settings: BaseServiceSettings,
    script: Any,
    entry: DeadEntry,
    same_original: Mapping[tuple[str, str], list[DeadEntry]],
    dry_run: bool,
) -> Outcome:
    keys = settings.keys
    checked = check(entry, keys)
    if isinstance(checked, str):
        return Outcome(entry.dead_id, Status.FAILED, stream=entry.stream, detail=checked)
    siblings = [
        e
        for e in same_original.get(entry.original, [])
        if e.dead_id != entry.dead_id and e.partition == entry.partition
    ]
    readers = await consumer_groups(redis, entry.stream)
    rejected_by = {entry.group, *(e.group for e in siblings)}
    outcome = Outcome(
        entry.dead_id,
        Status.REQUEUED,
        stream=entry.stream,
        event=checked,
        removed_with_it=tuple(e.dead_id for e in siblings),
        readers=readers,
        accepted_by=tuple(group for group in readers if group not in rejected_by),
    )
    if dry_run:
        return outcome
    kind = checked.stream
    new_id = await script(
        keys=[keys.dead(entry.partition), entry.stream],
        args=[
            settings.stream_maxlen(kind),
            json.dumps(flat_fields(checked), ensure_ascii=False),
            entry.dead_entry_id,
            *(e.dead_entry_id for e in siblings),
        ],
    )
    if new_id is None:
        detail = f"no longer in {keys.dead(entry.partition)} (requeued or deleted meanwhile)"
        return Outcome(entry.dead_id, Status.FAILED, stream=entry.stream, detail=detail)
    return replace(outcome, new_id=str(new_id))
