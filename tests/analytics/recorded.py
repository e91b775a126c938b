"""A simulated broadcast with activity changes, generated offline: a "recorded" stream for tests."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from services.ingest.settings import IngestSettings
from services.ingest.sources.audience import (
    channel_rng,
    closing_event,
    new_state,
    opening_events,
    step,
    switch_activity,
)
from services.ingest.sources.scenario import default_scenario
from shared.events import ActivityChangedEvent, EventBase

START = datetime(2026, 2, 27, 18, 0, tzinfo=UTC)
ACTIVITIES = ("talk", "q_and_a", "gameplay", "react", "music")


def recorded_stream(
    minutes: int,
    *,
    seed: int = 7,
    channel: str = "demo",
    segment_min: int = 10,
    viewers: int | None = None,
) -> list[EventBase]:
    """``minutes`` of simulated stream, switching activity every ``segment_min`` minutes.

    ``viewers`` replaces the default scenario's starting audience (chat scales with it).
    """
    settings = IngestSettings(_env_file=None, sim_seed=seed)
    rng = channel_rng(seed, channel)
    scenario = default_scenario()
    if viewers is not None:
        scenario = scenario.model_copy(update={"initial_viewers": viewers})
    state = new_state(scenario, settings, channel, START, rng)
    events: list[EventBase] = opening_events(state)
    for n, activity in zip(range(minutes // segment_min), itertools.cycle(ACTIVITIES)):
        if n:
            previous = state.activity
            switch_activity(state, activity)
            events.append(
                ActivityChangedEvent(
                    id=f"{state.stream_id}:act{n}",
                    channel=channel,
                    ts=state.now,
                    source="sim",
                    stream_id=state.stream_id,
                    activity=activity,
                    previous=previous,
                    reason="test schedule",
                    decided_by="bandit",
                )
            )
        for _ in range(segment_min * 60):
            events += step(state, rng, 1.0)
    return [*events, closing_event(state)]
