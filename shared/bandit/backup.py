"""The JSON backup of each channel's bandit: one file per channel (``data/bandit_state/``).

``BANDIT_STATE_PATH`` (``data/bandit_state.json``) names the backup. Each channel is
saved to its own file in the folder of that name without ``.json``
(``data/bandit_state/demo.json``; a path without ``.json`` is the folder itself), in
the format of the single file earlier versions kept for every channel,
``{"channels": {channel: ...}}`` with one channel. A save writes only its channel's
file, so its cost does not grow with the number of channels (the single file was
read, merged and rewritten whole on every save). The file is replaced atomically
(temp file, fsync, rename); a corrupt one is moved aside, never silently overwritten.

Reads take the channel's own file and, for a channel without one, its entry in the
single file at ``BANDIT_STATE_PATH`` itself, if there is one (the earlier format,
still read; never written).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
from pathlib import Path

from pydantic import ValidationError

from shared.bandit.state import BanditStateError, ChannelSnapshot, StateFile

log = logging.getLogger(__name__)

DEFAULT_STATE_PATH = Path("data/bandit_state.json")
UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def backup_dir(path: Path) -> Path:
    """The folder of one file per channel: ``path`` without ``.json`` (or ``path`` itself)."""
    return path.with_suffix("") if path.suffix == ".json" else path


def channel_path(path: Path, channel: str) -> Path:
    """The file of ``channel`` in the backup at ``path``: ``{folder}/{channel}.json``.

    A channel name with characters unsafe in a file name (logins never have any) gets
    a cleaned name plus a short hash, so two channels never share a file.
    """
    clean = UNSAFE.sub("_", channel) or "_"
    if clean != channel:
        clean = f"{clean[:100]}-{hashlib.sha256(channel.encode()).hexdigest()[:10]}"
    return backup_dir(path) / f"{clean}.json"


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


def read_channel(path: Path, channel: str) -> ChannelSnapshot | None:
    """``channel``'s saved state: its own file, else its entry in the single file at ``path``.

    None when neither has it; :class:`BanditStateError` when the file that would have
    it is unreadable or corrupt.
    """
    own = channel_path(path, channel)
    if own.exists():
        return read_state(own).channels.get(channel)
    if path.is_file():
        return read_state(path).channels.get(channel)
    return None


def backup_exists(path: Path) -> bool:
    """True when the backup at ``path`` exists: its folder, or the single file of old."""
    return backup_dir(path).is_dir() or path.is_file()


def write_channel(path: Path, channel: str, snapshot: ChannelSnapshot) -> None:
    """Replace ``channel``'s file in the backup at ``path`` (see :meth:`ThompsonBandit.save`).

    Only that channel's file is written. A corrupt file already there is moved aside
    to ``{file}.corrupt`` (logged) first.
    """
    target = channel_path(path, channel)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        try:
            read_state(target)
        except BanditStateError as error:
            aside = target.with_name(target.name + ".corrupt")
            os.replace(target, aside)
            log.error("%s; moved aside to %s, writing a fresh file", error, aside)
    state = StateFile(channels={channel: snapshot})
    replace_atomically(target, state.model_dump_json(indent=2) + "\n")


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
