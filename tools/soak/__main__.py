"""``python -m tools.soak`` (``make soak``): the command line; see :mod:`tools.soak`."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import tools.soak as package
from shared.redis_server import RedisServer
from tools.benchmarks.harness import write_section
from tools.soak import say
from tools.soak.report import render
from tools.soak.run import soak

DEFAULT_RATE = 5_000
DEFAULT_DURATION_S = 600.0
DEFAULT_SAMPLE_S = 10.0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.soak",
        description=package.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rate", type=int, default=DEFAULT_RATE, help="events/s to publish")
    parser.add_argument("--duration-s", type=float, default=DEFAULT_DURATION_S, help="load time")
    parser.add_argument("--sample-s", type=float, default=DEFAULT_SAMPLE_S, help="sample interval")
    parser.add_argument("--channels", type=int, choices=(1, 2, 3), default=3, help="channels")
    parser.add_argument("--aof", action="store_true", help="run redis-server with AOF on")
    parser.add_argument(
        "--no-write", action="store_true", help="print the section, leave docs/benchmarks.md"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``make soak``."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    workdir = Path(tempfile.mkdtemp(prefix="streamloop-soak-"))
    server = RedisServer(appendonly=args.aof)
    server.start()
    say(f"redis-server on port {server.port} (AOF {'on' if args.aof else 'off'})")
    try:
        outcome = asyncio.run(soak(args, server.url, workdir))
    finally:
        server.close()
    if isinstance(outcome, str):
        say(f"\033[31mSOAK FAILED: {outcome}\033[0m")
        return 1
    body = render(outcome)
    print(body, flush=True)
    if not args.no_write:
        write_section("soak", body)
        say("wrote section soak of docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
