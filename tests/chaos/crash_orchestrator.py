"""The real orchestrator service, killed with SIGKILL in the middle of scoring a segment.

``python -m tests.chaos.crash_orchestrator`` runs ``services.orchestrator`` as
``python -m services.orchestrator`` would, except that the bandit's
``update_once`` kills the process on call number ``CRASH_AFTER_UPDATES + 1``,
after the segment's reward is computed and before it is applied: that segment is
half-scored, the ones before it are scored, the lease is still held.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from services.orchestrator.main import main
from shared.bandit import ThompsonBandit

CRASH_AFTER = int(os.environ.get("CRASH_AFTER_UPDATES", "0"))
_real_update_once = ThompsonBandit.update_once
_calls = 0


async def update_once_then_crash(self: ThompsonBandit, *args: Any, **kwargs: Any) -> bool:
    """The real ``update_once``, except the call past ``CRASH_AFTER`` never happens."""
    global _calls
    _calls += 1
    if _calls > CRASH_AFTER:
        os.kill(os.getpid(), signal.SIGKILL)
    return await _real_update_once(self, *args, **kwargs)


if __name__ == "__main__":
    ThompsonBandit.update_once = update_once_then_crash  # type: ignore[method-assign]
    sys.exit(main())
