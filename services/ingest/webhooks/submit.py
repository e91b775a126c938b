"""Handing a webhook's events to the outage buffer, and refusing with 503 when it is full."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from fastapi import HTTPException, Request, status

from services.ingest.buffer import BufferFull
from services.ingest.state import ingest_state
from shared.clock import FutureTimestampError
from shared.events import EventBase, refuse_future_events
from shared.publisher import PublishResult

log = logging.getLogger("services.ingest.webhooks")

RETRY_AFTER_S = 10
"""``Retry-After`` sent with a 503 while the outage buffer is full."""


async def submit(
    request: Request, events: Sequence[EventBase], source: str
) -> PublishResult | None:
    """Publish ``events``, or hold them while Redis is down (``None``).

    A live event dated over ``MAX_CLOCK_SKEW_S`` ahead of the wall clock refuses the
    whole delivery with 422 and the reason (``shared.clock``'s time policy). A full
    buffer keeps none of them and answers 503 with ``Retry-After``, so the sender
    delivers again later.
    """
    state = ingest_state(request)
    try:
        refuse_future_events(events, state.settings.max_clock_skew_s)
    except FutureTimestampError as error:
        log.warning("refused a %s delivery: %s", source, error)
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from error
    try:
        return await state.buffer.submit(events, source)
    except BufferFull as error:
        log.error("refused a %s delivery: %s", source, error)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"{error}; deliver again later",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ) from error
