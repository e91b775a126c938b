"""Where a report goes: Redis (the record), ``data/retros/`` (files), stdout (once).

Every step may run again after a crash or a redelivery without doubling anything:

* Redis: ``HSET retro:{channel}:{stream_id}`` and ``ZADD retros:{channel}`` are queued
  on the consumer's MULTI, so they commit with the ack of the ``stream_ended``;
  rewriting them with the same report changes nothing.
* files: written to a temp file and renamed over ``{stream}.md`` / ``{stream}.html``,
  so a reader sees the old or the new file, never half of one; the same report
  gives the same bytes.
* stdout: printed by whoever first sets the hash's ``printed`` field (HSETNX), so a
  redelivery, a second replica or a second ``stream_ended`` for the same stream does
  not print it again. A crash between that claim and the print loses the print,
  never the report (it is in Redis and on disk).
* the bandit's ``before`` snapshot: HSETNX of the hash's ``bandit_before`` field, so
  the first snapshot of a stream is the one every later build reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import TextIO

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from services.retro.model import BanditSnapshot, RetroReport
from shared.keys import Keys

UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def file_stem(stream_id: str) -> str:
    """A file name for ``stream_id``: itself when safe, else a cleaned name plus a short hash."""
    clean = UNSAFE.sub("_", stream_id).lstrip(".") or "_"
    if clean == stream_id:
        return clean
    return f"{clean[:100]}-{hashlib.sha256(stream_id.encode()).hexdigest()[:10]}"


class ReportStore:
    """Stores reports of one deployment (see the module doc)."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        folder: str | Path,
        out: TextIO | None,
        consumer: str,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.folder = Path(folder)
        self.out = out
        self.consumer = consumer

    # ------------------------------------------------------------- bandit snapshot

    async def keep_snapshot(
        self, channel: str, stream_id: str, snapshot: BanditSnapshot
    ) -> BanditSnapshot:
        """Store ``snapshot`` unless the stream has one; return the stream's snapshot."""
        key = self.keys.retro(channel, stream_id)
        await self.redis.hsetnx(key, "bandit_before", snapshot.model_dump_json())
        return await self.snapshot(channel, stream_id) or snapshot

    async def snapshot(self, channel: str, stream_id: str) -> BanditSnapshot | None:
        """The stream's stored snapshot, if any."""
        raw = await self.redis.hget(self.keys.retro(channel, stream_id), "bandit_before")
        return BanditSnapshot.model_validate_json(raw) if raw else None

    @staticmethod
    def queue_snapshot(
        tx: Pipeline, keys: Keys, channel: str, stream_id: str, snapshot: BanditSnapshot
    ) -> None:
        """The same as :meth:`keep_snapshot`, on a transaction."""
        tx.hsetnx(keys.retro(channel, stream_id), "bandit_before", snapshot.model_dump_json())

    # ---------------------------------------------------------------------- report

    def queue(
        self, tx: Pipeline, report: RetroReport, markdown: str, html: str, ended_ms: int
    ) -> None:
        """Queue the report and its index entry on ``tx`` (committed with the ack)."""
        key = self.keys.retro(report.channel, report.stream_id)
        tx.hset(
            key,
            mapping={
                "channel": report.channel,
                "stream_id": report.stream_id,
                "ended_ms": str(ended_ms),
                "complete": "1" if report.complete else "0",
                "markdown": markdown,
                "html": html,
                "report": report.model_dump_json(),
            },
        )
        tx.zadd(self.keys.retro_index(report.channel), {report.stream_id: ended_ms})

    def paths(self, channel: str, stream_id: str) -> tuple[Path, Path]:
        """The Markdown and HTML files of a report."""
        stem = self.folder / channel / file_stem(stream_id)
        return stem.with_name(stem.name + ".md"), stem.with_name(stem.name + ".html")

    async def write_files(self, report: RetroReport, markdown: str, html: str) -> tuple[Path, Path]:
        """Write (or rewrite) both files atomically; return their paths."""
        md_path, html_path = self.paths(report.channel, report.stream_id)
        await asyncio.to_thread(write_atomically, md_path, markdown)
        await asyncio.to_thread(write_atomically, html_path, html)
        return md_path, html_path

    async def print_once(self, report: RetroReport, markdown: str) -> bool:
        """Print the Markdown unless it was printed before; returns whether this call did."""
        if self.out is None:
            return False
        key = self.keys.retro(report.channel, report.stream_id)
        if not await self.redis.hsetnx(key, "printed", self.consumer):
            return False
        self.out.write(markdown + "\n")
        self.out.flush()
        return True


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` beside ``path`` and rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
