"""Reading the commands out of docs/operations.md and running one through ``bash``.

A command runs as the doc prints it, with only the changes the test module's docstring
lists; :func:`problems_with` says how its output differs from its :class:`Expect`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import shutil
import signal
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from shared.clock import utc_now
from shared.events import ChatEvent, DonationEvent, EventBase
from shared.keys import Stream
from shared.publisher import Publisher
from tests.ops.expectations import (
    COMMAND_TIMEOUT_S,
    ERROR_REPLY,
    NEW_PASSWORD,
    OLD_PASSWORD,
    ROOT,
    TOKEN,
    Expect,
)

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
