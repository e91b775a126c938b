"""``python -m services.ingest [serve|record|replay|dead-letters]``: ingest and its tools."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.dead_letters import cli as dead_letters
from shared.logs import configure_logging
from shared.redis_client import connect_settings
from shared.serve import HttpLimits, serve

log = logging.getLogger("services.ingest")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command line: no command (or ``serve``) runs the service."""
    parser = argparse.ArgumentParser(prog="python -m services.ingest", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the sources and the webhook/health HTTP app (default)")
    record = commands.add_parser("record", help="write the event streams to a JSON Lines file")
    record.add_argument("file")
    record.add_argument("--follow", action="store_true", help="keep recording until Ctrl-C")
    replay = commands.add_parser("replay", help="publish a recording again (deduplicated)")
    replay.add_argument("file")
    replay.add_argument("--speed", type=float, default=1.0, help="x real time; 0 = max speed")
    dead_letters.add_parser(commands)
    return parser.parse_args(argv)


async def record(settings: IngestSettings, path: str, follow: bool) -> int:
    """Record the streams to ``path``; Ctrl-C ends a ``--follow`` recording."""
    from services.ingest.sources.recording import record as record_streams

    redis = connect_settings(settings)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    try:
        count = await record_streams(redis, settings, path, follow=follow, stop=stop)
    finally:
        await redis.aclose()
    log.info("recorded %d entries to %s", count, path)
    return 0


async def replay(settings: IngestSettings, path: str, speed: float) -> int:
    """Publish the recording at ``path`` again at ``speed`` x real time."""
    from services.ingest.sources.recording import replay as replay_file

    redis = connect_settings(settings)
    try:
        result = await replay_file(redis, settings, path, speed=speed)
    finally:
        await redis.aclose()
    log.info("replayed %s: %s", path, result)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    settings = IngestSettings()
    configure_logging("ingest", settings.log_level, settings.log_format)
    if args.command == "record":
        return asyncio.run(record(settings, args.file, args.follow))
    if args.command == "replay":
        return asyncio.run(replay(settings, args.file, args.speed))
    if args.command == "dead-letters":
        return dead_letters.main(settings, args)
    serve(
        create_app(settings),
        settings.bind_host,
        settings.ingest_port,
        limits=HttpLimits.of(settings),
    )
    return 0
