"""The outage buffer's journal: held events on disk, so that a killed ingest loses none of them.

While Redis is down, each ingest process appends the events it holds to its own
``held-<time>-<pid>.jsonl`` in ``INGEST_SPILL_DIR`` (the recording format that
``python -m services.ingest replay`` reads), flushing every append to the
kernel, so a SIGKILL of the process leaves every line behind. It keeps an
exclusive ``flock`` on that file while it lives and deletes the file once the
buffer is empty again.

At start, ingest takes over the journals no living process holds a lock on
(those of a process that was killed, or stopped with Redis still down): their
events are held again, written to the new process's own journal first and only
then deleted, and published when Redis answers. Events already published before
the kill are published again and dropped by the publisher's dedupe (within
``DEDUPE_CHAT_TTL_S`` for chat, follows and viewer counts, ``DEDUPE_TTL_S`` for
the rest).
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from services.ingest.sources.recording import entry_line, load_recording
from shared.events import EventBase, to_fields

log = logging.getLogger("services.ingest.journal")

JOURNAL_GLOB = "held-*.jsonl"


class HeldJournal:
    """This process's journal of held events (created on the first append)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        self.path = directory / f"held-{stamp}-{os.getpid()}.jsonl"
        self._file: TextIO | None = None

    def append(self, events: Iterable[EventBase]) -> None:
        """Write ``events`` at the end of the journal and flush them to the kernel."""
        if self._file is None:
            self._file = self._open_locked()
        self._file.writelines(entry_line(e.stream.value, "", to_fields(e)) for e in events)
        self._file.flush()

    def discard(self) -> None:
        """Delete the journal: every event in it is on a stream now."""
        if self._file is not None:
            self.path.unlink(missing_ok=True)
            self._close()

    def keep(self) -> None:
        """Close the journal and leave it for the next start (events are still held)."""
        self._close()

    def take_over(self) -> list[EventBase]:
        """The events of journals no living process holds, moved into this one (oldest first)."""
        taken: list[EventBase] = []
        for path in sorted(self.directory.glob(JOURNAL_GLOB)):
            if path != self.path:
                taken += self._take_over_one(path)
        return taken

    def _take_over_one(self, path: Path) -> list[EventBase]:
        """Move ``path``'s events here and delete it, holding its lock throughout.

        A journal whose lock is held belongs to a living process and is left alone.
        """
        with path.open("r", encoding="utf-8") as file:
            try:
                fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return []
            events = load_recording(path).events
            if events:
                self.append(events)
            path.unlink(missing_ok=True)
        log.warning("took over %d held events from %s", len(events), path)
        return events

    def _open_locked(self) -> TextIO:
        """Create the journal under a name no take-over matches, lock it, then name it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".part")
        file = partial.open("a", encoding="utf-8")
        fcntl.flock(file.fileno(), fcntl.LOCK_EX)
        partial.rename(self.path)
        return file

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()  # releases the lock
            self._file = None
