"""The ``list`` and ``requeue`` commands: arguments, exit codes, and printing to ``out``.

Exit codes: 0 done, 1 some entries were (or, dry, would be) left in
``events:dead``, or Redis could not be reached; 2 a usage error.
:func:`add_actions` adds the two commands to a parser (``python -m
shared.dead_letters``); :func:`add_parser` adds them as ``dead-letters`` to the
ingest command line.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Sequence
from typing import TextIO

from redis.asyncio import Redis

from shared.dead_letters.entries import newest
from shared.dead_letters.report import format_entry, format_outcome, summary
from shared.dead_letters.requeue import requeue
from shared.keys import EVENT_STREAMS, Keys, Stream
from shared.redis_client import CONNECTION_ERRORS, connect_settings, redact_url
from shared.settings import BaseServiceSettings

DEFAULT_LIMIT = 20
ENTRY_ID = re.compile(r"\d{1,20}-\d{1,20}")
STREAM_CHOICES = [kind.value for kind in EVENT_STREAMS]
DESCRIPTION = "List the entries consumers rejected (events:dead), or put them back."


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
    add_actions(
        commands.add_parser(
            "dead-letters",
            help="list or requeue the entries of events:dead",
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
    """Run the parsed command (``python -m shared.dead_letters`` or ingest's ``dead-letters``)."""
    check_args(args)
    return asyncio.run(run(settings, args, out or sys.stdout))
