"""The JSON backup of every channel's bandit (``data/bandit_state.json``).

One file for all channels, merged under an advisory lock and replaced atomically
(temp file, fsync, rename), so concurrent saves of different channels never lose
each other's entries; a corrupt file is moved aside, never silently overwritten.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from shared.bandit.state import BanditStateError, ChannelSnapshot, StateFile

log = logging.getLogger(__name__)

DEFAULT_STATE_PATH = Path("data/bandit_state.json")


def read_state(path: Path) -> StateFile:
    """The state file at ``path``; :class:`BanditStateError` if missing, unreadable or corrupt."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise BanditStateError(f"{path}: cannot read the bandit state: {error}") from error
    try:
        return StateFile.model_validate_json(text)
    except ValidationError as error:
        raise BanditStateError(f"{path}: not a valid bandit state file: {error}") from error


def write_channel(path: Path, channel: str, snapshot: ChannelSnapshot) -> None:
    """Merge ``channel``'s snapshot into the file at ``path`` (see :meth:`ThompsonBandit.save`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with locked(path.with_name(path.name + ".lock")):
        state = StateFile()
        if path.exists():
            try:
                state = read_state(path)
            except BanditStateError as error:
                aside = path.with_name(path.name + ".corrupt")
                os.replace(path, aside)
                log.error("%s; moved aside to %s, writing a fresh file", error, aside)
        state.channels[channel] = snapshot
        replace_atomically(path, state.model_dump_json(indent=2) + "\n")


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock (``flock``) on ``lock_path`` while inside."""
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def replace_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temp file beside ``path``, fsync it, and rename it over ``path``."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
