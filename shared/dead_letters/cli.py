"""``python -m services.ingest dead-letters list|requeue``: read and replay ``events:dead``.

A consumer group writes an entry it cannot take to ``events:dead`` (fields
``reason``, ``stream``, ``entry_id``, ``raw`` (JSON of the original fields),
``group``, ``ts``) and acks it, so it is neither lost nor retried forever
(``shared/consumer.py``). This tool is how a person looks at those entries and,
once the cause is fixed, puts them back.

``list`` prints the newest dead letters first (``--limit``, ``--stream`` to keep
one stream's): the dead letter's id, the stream and entry id it came from, the
group that rejected it, when, why, and its raw fields.

``requeue`` takes dead-letter ids, or ``--all`` (optionally only ``--stream``'s),
oldest first, and for each:

* parses the raw fields with the shared models (:func:`shared.events.parse_fields`).
  An entry that still breaks the contract, or whose type does not belong on its
  stream, is **not** requeued: it stays in ``events:dead`` and the reason is printed;
* otherwise adds the event back to the stream it came from, in the publisher's
  canonical form (``XADD <stream> MAXLEN ~ <STREAM_MAXLEN_*> *``), and removes the
  dead letter (``XDEL``) in one Lua script. The script is atomic, as a MULTI/EXEC
  would be, so nothing is lost or written twice if the tool dies midway; it also
  adds the entry only if *its own* XDEL removed the dead letter, which a MULTI/EXEC
  cannot express, so two people requeueing the same id at once add it once;
* one original entry rejected by several groups (``events:lifecycle`` is read by
  ``analytics`` and ``retro``) has one dead letter per group: requeueing any of
  them adds the entry once and removes all of them in the same script.

**The publisher's dedupe is bypassed on purpose.** The original was published
once, so its marker ``dedupe:{source}:{id}`` may still exist, and the
:class:`~shared.publisher.Publisher` would drop the event as a duplicate. But the
consumer rejected that entry (dead-lettered and acked it without applying it), so
its effects never happened: the requeued copy is written with a plain XADD,
under a new entry id, and every group reading the stream gets it once. A group
that had *accepted* the original (possible only when another group's handler
failed on it) sees it a second time; the dry run and the result name such
groups. The only stream with two groups is ``events:lifecycle``, and neither of
its handlers counts a repeated lifecycle event twice (analytics keeps them as
sorted-set members; retro keys its work by stream and segment).

``--dry-run`` prints what would happen and changes nothing. Exit codes: 0 done,
1 some entries were (or, dry, would be) left in ``events:dead``, or Redis could not
be reached; 2 a usage error. ``REDIS_KEY_PREFIX`` is respected (``settings.keys``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, TextIO

import pydantic
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from shared.clock import format_ts
from shared.events import (
    EventBase,
    decode_fields,
    describe_validation_error,
    flat_fields,
    parse_fields,
)
from shared.keys import EVENT_STREAMS, Keys, Stream
from shared.redis_client import CONNECTION_ERRORS, connect_settings, redact_url
from shared.settings import BaseServiceSettings

PAGE_ENTRIES = 1000
"""Entries read per XRANGE/XREVRANGE call."""
DEFAULT_LIMIT = 20
VALUE_CHARS = 160
"""Longest raw field value printed whole; longer ones are cut, saying how much was left out."""
ENTRY_ID = re.compile(r"\d{1,20}-\d{1,20}")
STREAM_CHOICES = [kind.value for kind in EVENT_STREAMS]

REQUEUE_SCRIPT = """
-- KEYS[1] the dead-letter stream; KEYS[2] the stream the entry came from
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


@dataclass(frozen=True)
class DeadEntry:
    """One entry of ``events:dead``, fields as stored (a malformed one is still listed)."""

    dead_id: str
    fields: Mapping[str, str]

    @property
    def stream(self) -> str:
        """Key of the stream the rejected entry was on."""
        return self.fields.get("stream", "")

    @property
    def entry_id(self) -> str:
        """Its entry id there."""
        return self.fields.get("entry_id", "")

    @property
    def group(self) -> str:
        """The consumer group that rejected it."""
        return self.fields.get("group", "")

    @property
    def original(self) -> tuple[str, str]:
        """(stream, entry id) of the rejected entry: the same for every group's dead letter."""
        return self.stream, self.entry_id


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


# ---- reading ---------------------------------------------------------------------------


def _entry(dead_id: str, fields: Any) -> DeadEntry:
    return DeadEntry(dead_id, dict(decode_fields(fields or {})))


async def newest(
    redis: Redis, keys: Keys, limit: int, stream: Stream | None = None
) -> list[DeadEntry]:
    """Up to ``limit`` dead letters, newest first, only ``stream``'s when given."""
    wanted = keys.stream(stream) if stream is not None else None
    found: list[DeadEntry] = []
    end = "+"
    while len(found) < limit:
        page: list[Any] = list(
            await redis.xrevrange(keys.dead, max=end, min="-", count=PAGE_ENTRIES) or []
        )
        for dead_id, fields in page:
            entry = _entry(dead_id, fields)
            if wanted is None or entry.stream == wanted:
                found.append(entry)
                if len(found) == limit:
                    break
        if len(page) < PAGE_ENTRIES:
            break
        end = f"({page[-1][0]}"
    return found


async def read_all(redis: Redis, keys: Keys) -> list[DeadEntry]:
    """Every dead letter, oldest first (the stream is capped at ``STREAM_MAXLEN_DEAD``)."""
    entries: list[DeadEntry] = []
    start = "-"
    while True:
        page: list[Any] = list(
            await redis.xrange(keys.dead, min=start, max="+", count=PAGE_ENTRIES) or []
        )
        entries += [_entry(dead_id, fields) for dead_id, fields in page]
        if len(page) < PAGE_ENTRIES:
            return entries
        start = f"({page[-1][0]}"


def stream_kind(keys: Keys, stream_key: str) -> Stream | None:
    """The event stream ``stream_key`` names in this deployment, or None."""
    for kind in EVENT_STREAMS:
        if keys.stream(kind) == stream_key:
            return kind
    return None


def check(entry: DeadEntry, keys: Keys) -> EventBase | str:
    """The event to requeue, or why ``entry`` cannot be requeued."""
    if not entry.stream or "raw" not in entry.fields:
        return "not a dead letter: it has no stream or raw field"
    kind = stream_kind(keys, entry.stream)
    if kind is None:
        return (
            f"{entry.stream} is not an event stream of this deployment "
            f"(REDIS_KEY_PREFIX={keys.prefix!r})"
        )
    try:
        raw = json.loads(entry.fields["raw"])
    except json.JSONDecodeError as error:
        return f"raw is not JSON ({error})"
    if not isinstance(raw, dict):
        return "raw is not a JSON object"
    try:
        event: EventBase = parse_fields(raw)
    except pydantic.ValidationError as error:
        return f"still breaks the contract: {describe_validation_error(error)}"
    if event.stream is not kind:
        return f"still breaks the contract: type {event.type!r} does not belong on {entry.stream}"
    return event


async def consumer_groups(redis: Redis, stream_key: str) -> tuple[str, ...]:
    """Names of the consumer groups reading ``stream_key`` (none if it does not exist)."""
    try:
        groups: list[dict[str, Any]] = await redis.xinfo_groups(stream_key)
    except ResponseError:
        return ()
    return tuple(str(group["name"]) for group in groups)


# ---- requeueing ------------------------------------------------------------------------


async def requeue(
    redis: Redis,
    settings: BaseServiceSettings,
    ids: Sequence[str] | None = None,
    *,
    stream: Stream | None = None,
    dry_run: bool = False,
) -> RequeueReport:
    """Requeue the dead letters ``ids`` (None: all of them, or all of ``stream``'s).

    See the module doc for what is checked and how the write is made atomic.
    """
    keys = settings.keys
    everything = await read_all(redis, keys)
    by_id = {entry.dead_id: entry for entry in everything}
    same_original: defaultdict[tuple[str, str], list[DeadEntry]] = defaultdict(list)
    for dead in everything:
        if dead.stream and dead.entry_id:
            same_original[dead.original].append(dead)
    if ids is None:
        wanted = keys.stream(stream) if stream is not None else None
        selected = [e.dead_id for e in everything if wanted is None or e.stream == wanted]
    else:
        selected = list(dict.fromkeys(ids))
    script = redis.register_script(REQUEUE_SCRIPT)
    report = RequeueReport(dry_run=dry_run)
    handled: dict[tuple[str, str], str] = {}  # original entry -> dead letter requeued for it
    for dead_id in selected:
        entry = by_id.get(dead_id)
        if entry is None:
            report.outcomes.append(Outcome(dead_id, Status.FAILED, detail="no such dead letter"))
        elif entry.original in handled:
            first = handled[entry.original]
            report.outcomes.append(
                Outcome(dead_id, Status.MERGED, stream=entry.stream, detail=first)
            )
        else:
            outcome = await _requeue_one(redis, settings, script, entry, same_original, dry_run)
            if outcome.status is Status.REQUEUED:
                handled[entry.original] = dead_id
            report.outcomes.append(outcome)
    return report


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
    siblings = [e for e in same_original.get(entry.original, []) if e.dead_id != entry.dead_id]
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
        keys=[keys.dead, entry.stream],
        args=[
            settings.stream_maxlen(kind),
            json.dumps(flat_fields(checked), ensure_ascii=False),
            entry.dead_id,
            *outcome.removed_with_it,
        ],
    )
    if new_id is None:
        detail = "no longer in events:dead (requeued or deleted meanwhile)"
        return Outcome(entry.dead_id, Status.FAILED, stream=entry.stream, detail=detail)
    return replace(outcome, new_id=str(new_id))


# ---- printing --------------------------------------------------------------------------


def _value(text: str) -> str:
    """A raw value as a person reads it: bare when plain, else JSON-quoted; long ones cut."""
    cut = ""
    if len(text) > VALUE_CHARS:
        cut = f"...(+{len(text) - VALUE_CHARS} chars)"
        text = text[:VALUE_CHARS]
    plain = bool(re.fullmatch(r"[\w.:@+/-]+", text))
    return (text if plain else json.dumps(text, ensure_ascii=False)) + cut


def format_raw(raw: str) -> str:
    """``name=value ...`` of a dead letter's raw JSON (the text itself when it is not JSON)."""
    try:
        fields = json.loads(raw)
    except json.JSONDecodeError:
        return _value(raw)
    if not isinstance(fields, dict):
        return _value(raw)
    return " ".join(f"{name}={_value(str(value))}" for name, value in fields.items())


def format_entry(entry: DeadEntry) -> str:
    """The lines ``list`` prints for one dead letter."""
    if not entry.stream or "raw" not in entry.fields:
        body = " ".join(f"{name}={_value(value)}" for name, value in entry.fields.items())
        return f"{entry.dead_id}  (not a dead letter written by a consumer)\n  fields: {body}"
    when = entry.fields.get("ts", "?")
    return (
        f"{entry.dead_id}  from {entry.stream} {entry.entry_id or '?'}  "
        f"group {entry.group or '?'}  at {when}\n"
        f"  reason: {entry.fields.get('reason', '')}\n"
        f"  raw:    {format_raw(entry.fields['raw'])}"
    )


def describe_event(event: EventBase) -> str:
    """``chat sim:c2 on demo at 2026-...Z``."""
    return f"{event.type} {event.source}:{event.id} on {event.channel} at {format_ts(event.ts)}"


def format_outcome(outcome: Outcome, dry_run: bool) -> str:
    """One line (two with a note) per dead letter of a ``requeue`` call."""
    if outcome.status is Status.FAILED:
        source = f" (from {outcome.stream})" if outcome.stream else ""
        return f"not requeued {outcome.dead_id}{source}: {outcome.detail}"
    if outcome.status is Status.MERGED:
        verb = "would remove" if dry_run else "removed"
        return f"{verb} {outcome.dead_id}: the same entry as {outcome.detail}, requeued once"
    assert outcome.event is not None
    verb = "would requeue" if dry_run else "requeued"
    target = outcome.stream if dry_run else f"{outcome.stream} {outcome.new_id}"
    line = f"{verb} {outcome.dead_id}: {describe_event(outcome.event)} -> {target}"
    if outcome.removed_with_it:
        line += f" (with {', '.join(outcome.removed_with_it)}: the same entry, another group)"
    line += (
        f"; read by {', '.join(outcome.readers)}"
        if outcome.readers
        else "; no consumer group reads that stream yet"
    )
    if outcome.accepted_by:
        line += (
            f"\n  note: {', '.join(outcome.accepted_by)} did not reject the original and "
            "gets this copy too"
        )
    return line


def summary(report: RequeueReport) -> str:
    """The closing line of ``requeue``."""
    done, failed = report.count(Status.REQUEUED), report.count(Status.FAILED)
    merged = report.count(Status.MERGED)
    extra = f", {merged} duplicate dead letters removed with them" if merged else ""
    if report.dry_run:
        return (
            f"dry run, nothing changed: {done} would be requeued{extra}, "
            f"{failed} would stay in events:dead"
        )
    left = " (left in events:dead)" if failed else ""
    return f"{done} requeued{extra}, {failed} not requeued{left}"


async def list_command(
    redis: Redis, keys: Keys, limit: int, stream: Stream | None, out: TextIO
) -> int:
    """``dead-letters list``: print the newest dead letters."""
    entries = await newest(redis, keys, limit, stream)
    total = await redis.xlen(keys.dead)
    scope = f" from {keys.stream(stream)}" if stream is not None else ""
    if not entries:
        print(f"no dead letters{scope} ({keys.dead} holds {total})", file=out)
        return 0
    print(
        f"{len(entries)} dead letters{scope}, newest first ({keys.dead} holds {total}):", file=out
    )
    for entry in entries:
        print(f"\n{format_entry(entry)}", file=out)
    return 0


async def requeue_command(
    redis: Redis,
    settings: BaseServiceSettings,
    ids: Sequence[str] | None,
    stream: Stream | None,
    dry_run: bool,
    out: TextIO,
) -> int:
    """``dead-letters requeue``: requeue, print a line per dead letter and a summary."""
    report = await requeue(redis, settings, ids, stream=stream, dry_run=dry_run)
    if not report.outcomes:
        scope = f" from {settings.keys.stream(stream)}" if stream is not None else ""
        print(f"no dead letters{scope}: nothing to requeue", file=out)
        return 0
    for outcome in report.outcomes:
        print(format_outcome(outcome, dry_run), file=out)
    print(summary(report), file=out)
    return report.exit_code


# ---- command line ----------------------------------------------------------------------


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _entry_id(text: str) -> str:
    if not ENTRY_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a stream entry id (like 1772188200000-0): "
            "take it from the first column of `dead-letters list`"
        )
    return text


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``dead-letters list|requeue`` to the ingest command line."""
    parser = commands.add_parser(
        "dead-letters",
        help="list or requeue the entries of events:dead",
        description="List the entries consumers rejected (events:dead), or put them back.",
    )
    actions = parser.add_subparsers(dest="dead_letters_command", required=True)
    listing = actions.add_parser(
        "list", help="newest first: id, original stream, group, reason, raw fields"
    )
    listing.add_argument("--limit", type=_limit, default=DEFAULT_LIMIT, help="default 20")
    listing.add_argument("--stream", choices=STREAM_CHOICES, help="only this stream's")
    again = actions.add_parser(
        "requeue",
        help="validate and add entries back to their streams",
        description="Requeue dead letters: each is validated with the shared event models; "
        "valid ones are added back to their stream and removed from events:dead in one "
        "atomic step, on purpose past the publisher's dedupe (the consumer never applied "
        "them). Exit 1 when some are left in events:dead.",
    )
    again.add_argument("ids", nargs="*", type=_entry_id, metavar="ID", help="dead-letter ids")
    again.add_argument("--all", action="store_true", help="every dead letter, oldest first")
    again.add_argument("--stream", choices=STREAM_CHOICES, help="with --all: only this stream's")
    again.add_argument("--dry-run", action="store_true", help="show what would happen")
    again.set_defaults(dead_letters_usage=again.error)


def check_args(args: argparse.Namespace) -> None:
    """Usage errors argparse cannot see; exits with code 2 (through ``parser.error``)."""
    if args.dead_letters_command != "requeue":
        return
    if args.all and args.ids:
        args.dead_letters_usage("give dead-letter ids or --all, not both")
    if not args.all and not args.ids:
        args.dead_letters_usage("give one or more dead-letter ids, or --all")
    if args.stream and not args.all:
        args.dead_letters_usage("--stream selects among all dead letters: use it with --all")


async def run(settings: BaseServiceSettings, args: argparse.Namespace, out: TextIO) -> int:
    """Run the parsed ``dead-letters`` command; returns the exit code."""
    redis = connect_settings(settings)
    stream = Stream(args.stream) if args.stream else None
    try:
        if args.dead_letters_command == "list":
            return await list_command(redis, settings.keys, args.limit, stream, out)
        ids = None if args.all else args.ids
        return await requeue_command(redis, settings, ids, stream, args.dry_run, out)
    except CONNECTION_ERRORS as error:
        url = redact_url(settings.redis_url.get_secret_value())
        print(f"cannot reach Redis at {url}: {error}", file=sys.stderr)
        return 1
    finally:
        await redis.aclose()


def main(settings: BaseServiceSettings, args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Entry point of ``python -m services.ingest dead-letters``."""
    check_args(args)
    return asyncio.run(run(settings, args, out or sys.stdout))
