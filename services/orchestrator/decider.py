"""One decision for one channel: Claude with the bandit's suggestion, or the bandit alone.

Order of precedence:

1. an activity younger than ``MIN_SEGMENT_S`` stays on air (rule ``dwell``), so every
   segment lives long enough to be scored; with ``chosen_s`` (commit, then judge: the
   loop passes the time since the last choice, kept or switched), every choice holds
   ``MIN_SEGMENT_S`` before the next is made, so the bandit decides once per segment;
2. Claude's tool call, when an API key is set and the call succeeds;
3. otherwise the bandit's sampled arm (the log and the record say why Claude was
   not used); without a bandit, the current activity is kept (``default``).

Constructed without a metrics reader or a bandit it still decides, on a basic
context, as the seed plan required.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Literal

from services.orchestrator.claude import ClaudeAdvisor
from services.orchestrator.claude_usage import Usage
from services.orchestrator.context import MetricsReader, describe, render
from shared.bandit import ThompsonBandit

log = logging.getLogger("services.orchestrator.decider")
Decider = Literal["claude", "bandit", "dwell", "default"]


@dataclass(frozen=True)
class Decision:
    """What was decided for a channel at event time ``at_ms``, by whom and why."""

    channel: str
    at_ms: int
    action: Literal["switch", "keep"]
    activity: str
    previous: str
    suggestion: str
    decided_by: Decider
    reason: str
    fallback: str = ""
    chat_message: str = ""
    usage: Usage | None = None
    """Tokens, latency and cost of the Claude call behind this decision, if one was made."""

    def fields(self) -> dict[str, str]:
        """Flat string fields, as recorded on ``decisions:{channel}`` (usage when Claude ran)."""
        flat = {f.name: str(getattr(self, f.name)) for f in fields(self) if f.name != "usage"}
        return flat | (self.usage.fields() if self.usage else {})


class Orchestrator:
    """Decides what each channel does next (see module doc)."""

    def __init__(
        self,
        activities: list[str],
        *,
        advisor: ClaudeAdvisor | None = None,
        metrics: MetricsReader | None = None,
        bandits: Callable[[str], ThompsonBandit] | None = None,
        min_segment_s: float = 0.0,
    ) -> None:
        self.activities = activities
        self.advisor = advisor
        self.metrics = metrics
        self.bandits = bandits
        self.min_segment_s = min_segment_s

    async def decide(
        self,
        channel: str,
        current: str,
        at_ms: int,
        on_air_s: float,
        *,
        chosen_s: float | None = None,
    ) -> Decision:
        """The decision for ``channel`` whose ``current`` activity has been on air ``on_air_s``
        (and was last chosen ``chosen_s`` ago, when choices are committed to)."""
        held_s = on_air_s if chosen_s is None else min(on_air_s, chosen_s)
        if current and held_s < self.min_segment_s:
            made = _Maker(channel, at_ms, current, "")
            why = (
                f"{current} has been on air {on_air_s:.0f} s of at least {self.min_segment_s:.0f}"
                if chosen_s is None or on_air_s <= chosen_s
                else f"{current} was chosen {chosen_s:.0f} s ago; a choice holds "
                f"{self.min_segment_s:.0f} s"
            )
            return made(current, "dwell", why)
        bandit = self.bandits(channel) if self.bandits else None
        suggestion = await bandit.select() if bandit else ""
        made = _Maker(channel, at_ms, current, suggestion)
        fallback, usage = "no Claude advisor", None
        if self.advisor is not None and (why_not := self.advisor.why_not_now()) is not None:
            fallback = why_not
        elif self.advisor is not None:
            context = await self._context(channel, current, at_ms, on_air_s, suggestion, bandit)
            asked = await self.advisor.advise(context, current)
            advice, fallback, usage = asked.advice, asked.why_not, asked.usage
            if advice is not None:
                return made(
                    advice.activity,
                    "claude",
                    advice.reason,
                    chat_message=advice.chat_message,
                    usage=usage,
                )
        if suggestion:
            log.info("%s: using the bandit's choice %s (%s)", channel, suggestion, fallback)
            return made(
                suggestion,
                "bandit",
                f"sampled {suggestion} highest",
                fallback=fallback,
                usage=usage,
            )
        return made(
            current or self.activities[0],
            "default",
            "no bandit: keeping the activity on air",
            fallback=fallback,
        )

    async def _context(
        self,
        channel: str,
        current: str,
        at_ms: int,
        on_air_s: float,
        suggestion: str,
        bandit: ThompsonBandit | None,
    ) -> str:
        """Claude's situation report; the basic context without a metrics reader."""
        if self.metrics is None:
            return describe(None, suggestion, current)
        situation = await self.metrics.situation(
            channel,
            current=current,
            on_air_s=on_air_s,
            at_ms=at_ms,
            suggestion=suggestion,
            bandit=bandit,
        )
        return render(situation)


@dataclass(frozen=True)
class _Maker:
    """Builds the :class:`Decision` of one call; the action follows from the activity."""

    channel: str
    at_ms: int
    current: str
    suggestion: str

    def __call__(self, activity: str, decided_by: Decider, reason: str, **extra: Any) -> Decision:
        action: Literal["switch", "keep"] = "keep" if activity == self.current else "switch"
        return Decision(
            channel=self.channel,
            at_ms=self.at_ms,
            action=action,
            activity=activity,
            previous=self.current,
            suggestion=self.suggestion,
            decided_by=decided_by,
            reason=reason,
            **extra,
        )
