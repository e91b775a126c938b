"""The ``list`` and ``requeue`` commands: arguments, exit codes, and printing to ``out``.

Exit codes: 0 done, 1 some entries were (or, dry, would be) left in their
partition's ``events:{pNN}:dead``, or Redis could not be reached; 2 a usage error
(a partition past ``PARTITIONS`` included).
:func:`add_actions` adds the two commands to a parser (``python -m
shared.dead_letters``); :func:`add_parser` adds them as ``dead-letters`` to the
ingest command line.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import TextIO

from redis.asyncio import Redis

from shared.dead_letters.entries import Selection, count, newest, parse_dead_id
from shared.dead_letters.report import format_entry, format_outcome, summary
from shared.dead_letters.requeue import requeue
from shared.keys import EVENT_STREAMS, Keys, Stream
from shared.redis_client import CONNECTION_ERRORS, connect_settings, redact_url
from shared.settings import BaseServiceSettings

DEFAULT_LIMIT = 20
STREAM_CHOICES = [kind.value for kind in EVENT_STREAMS]
DESCRIPTION = (
    "List the entries consumers rejected (every partition's events:{pNN}:dead), or put them back."
)
ID_HELP = (
    "dead-letter ids as `list` prints them, partition/entry id (p07/1772190000123-0); "
    "a plain entry id when only one partition holds it"
)


async def list_command(
    redis: Redis, keys: Keys, limit: int, selection: Selection, out: TextIO
) -> int:
    """``dead-letters list``: print the newest selected dead letters of every partition."""
    entries = await newest(redis, keys, limit, selection)
    total = await count(redis, keys, selection.partitions(keys))
    scope = selection.describe()
    where = selection.where(keys)
    holds = f"{where} {'holds' if len(selection.partitions(keys)) == 1 else 'hold'} {total}"
    if not entries:
        print(f"no dead letters{scope} ({holds})", file=out)
        return 0
    print(f"{len(entries)} dead letters{scope}, newest first ({holds}):", file=out)
    for entry in entries:
        print(f"\n{format_entry(entry)}", file=out)
    return 0


async def requeue_command(
    redis: Redis,
    settings: BaseServiceSettings,
    ids: Sequence[str] | None,
    selection: Selection,
    dry_run: bool,
    out: TextIO,
) -> int:
    """``dead-letters requeue``: requeue, print a line per dead letter and a summary."""
    report = await requeue(redis, settings, ids, selection=selection, dry_run=dry_run)
    if not report.outcomes:
        print(f"no dead letters{selection.describe()}: nothing to requeue", file=out)
        return 0
    for outcome in report.outcomes:
        print(format_outcome(outcome, dry_run), file=out)
    print(summary(report), file=out)
    return report.exit_code


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _partition(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a partition number (0, 1, ...), got {text!r}")
    return int(text)


def _dead_id(text: str) -> str:
    try:
        parse_dead_id(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a dead-letter id (like p07/1772190000123-0): "
            "take it from the first column of `dead-letters list`"
        ) from None
    return text


def _add_filters(parser: argparse.ArgumentParser, note: str = "") -> None:
    parser.add_argument("--stream", choices=STREAM_CHOICES, help=f"{note}only this stream's")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--partition", type=_partition, help=f"{note}only this partition's events:{{pNN}}:dead"
    )
    where.add_argument("--channel", help=f"{note}only this channel's (read from its partition)")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``dead-letters list|requeue`` to the ingest command line."""
    add_actions(
        commands.add_parser(
            "dead-letters",
            help="list or requeue the entries of the events:{pNN}:dead streams",
            description=DESCRIPTION,
        )
    )


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line of ``python -m shared.dead_letters list|requeue``."""
    parser = argparse.ArgumentParser(prog="python -m shared.dead_letters", description=DESCRIPTION)
    add_actions(parser)
    return parser.parse_args(argv)


def add_actions(parser: argparse.ArgumentParser) -> None:
    """Add the ``list`` and ``requeue`` commands (and their options) to ``parser``."""
    actions = parser.add_subparsers(dest="dead_letters_command", required=True)
    listing = actions.add_parser(
        "list",
        help="newest first, all partitions merged: id, original stream, group, reason, raw fields",
    )
    listing.add_argument("--limit", type=_limit, default=DEFAULT_LIMIT, help="default 20")
    _add_filters(listing)
    again = actions.add_parser(
        "requeue",
        help="validate and add entries back to their streams",
        description="Requeue dead letters: each is validated with the shared event models; "
        "valid ones are added back to their stream and removed from their partition's "
        "events:{pNN}:dead in one atomic step, on purpose past the publisher's dedupe (the "
        "consumer never applied them). Exit 1 when some are left dead-lettered.",
    )
    again.add_argument("ids", nargs="*", type=_dead_id, metavar="ID", help=ID_HELP)
    again.add_argument("--all", action="store_true", help="every dead letter, oldest first")
    _add_filters(again, "with --all: ")
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
    for name in ("stream", "partition", "channel"):
        if getattr(args, name, None) is not None and not args.all:
            args.dead_letters_usage(f"--{name} selects among all dead letters: use it with --all")


async def run(settings: BaseServiceSettings, args: argparse.Namespace, out: TextIO) -> int:
    """Run the parsed ``dead-letters`` command; returns the exit code."""
    selection = Selection(
        stream=Stream(args.stream) if getattr(args, "stream", None) else None,
        partition=getattr(args, "partition", None),
        channel=getattr(args, "channel", None),
    )
    if selection.partition is not None and selection.partition >= settings.partitions:
        print(
            f"no partition {selection.partition}: PARTITIONS is {settings.partitions} "
            f"(0 to {settings.partitions - 1})",
            file=sys.stderr,
        )
        return 2
    redis = connect_settings(settings)
    try:
        if args.dead_letters_command == "list":
            return await list_command(redis, settings.keys, args.limit, selection, out)
        ids = None if args.all else args.ids
        return await requeue_command(redis, settings, ids, selection, args.dry_run, out)
    except CONNECTION_ERRORS as error:
        url = redact_url(settings.redis_url.get_secret_value())
        print(f"cannot reach Redis at {url}: {error}", file=sys.stderr)
        return 1
    finally:
        await redis.aclose()


def main(settings: BaseServiceSettings, args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the parsed command (``python -m shared.dead_letters`` or ingest's ``dead-letters``)."""
    check_args(args)
    return asyncio.run(run(settings, args, out or sys.stdout))
