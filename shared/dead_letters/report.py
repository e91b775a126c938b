"""What a person reads: a dead letter, a requeue outcome, the closing summary."""

from __future__ import annotations

import json
import re

from shared.clock import format_ts
from shared.dead_letters.entries import DeadEntry
from shared.dead_letters.requeue import Outcome, RequeueReport, Status
from shared.events import EventBase

VALUE_CHARS = 160
"""Longest raw field value printed whole; longer ones are cut, saying how much was left out."""


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
            f"{failed} would stay in the dead-letter streams"
        )
    left = " (left in the dead-letter streams)" if failed else ""
    return f"{done} requeued{extra}, {failed} not requeued{left}"
