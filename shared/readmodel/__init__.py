"""The read model: what the other services read of analytics' per-channel state.

Contract
--------
**Written by analytics only.** Its handler (``services/analytics/handler.py``)
writes raw state per channel, ``analytics:{channel}:*`` (key names in
:class:`shared.keys.AnalyticsKeys`, layout in docs/redis-schema.md), in the same
``MULTI/EXEC`` as the ``XACK`` of the entries it comes from. Every write is
commutative (counters, set members keyed by the event's ``{source}:{id}``), so
each event counts once whatever the batches, order or replicas. Lifecycle
members are encoded by :func:`shared.readmodel.lifecycle.lifecycle_member`, the
one encoding writer and readers share; paid records and their per-minute totals
by :mod:`shared.readmodel.paid_sums`.

**Read by** the analytics REST API and dashboard (timelines, summaries, paid
sums, recent donations), the orchestrator and ``shared/rewards.py`` (the current
stream's state, segment figures for rewards, Claude's context) and retro (the
post-stream summary). Nobody else writes these keys.

Invariants:

* Time is event time (``ts``), epoch ms; ranges are half-open ``[start, end)``,
  a live stream runs through the channel clock (the largest ``ts`` seen).
* Every read is atomic: one Lua script (:data:`shared.readmodel.lifecycle.READ_STREAM`,
  :data:`shared.readmodel.ranges.READ_RANGE`, the paid-sum scripts) or one ``MULTI``,
  so a reader never sees half a batch.
* No read grows with the channel's history: a stream's lifecycle is one range of
  it, found through the clock's ``started`` and the index by stream
  (``stream_first_starts``, ``stream_last_starts``), never the whole set.
* Money is summed in integer cents and reported in USD rounded to cents.
* A summary never raises for missing data: absent inputs are zeros, listed in
  ``missing``.

Modules, one concept each:

* :mod:`~shared.readmodel.lifecycle`: stream state, spans, activity segments, timelines;
* :mod:`~shared.readmodel.ranges`: the raw state of a time range (``READ_RANGE``);
* :mod:`~shared.readmodel.figures`: figures of ranges, segment stats, engagement;
* :mod:`~shared.readmodel.summary`: the post-stream summary;
* :mod:`~shared.readmodel.paid_sums`: exact paid sums in O(minutes);
* :mod:`~shared.readmodel.donations`: the latest donations and cheers;
* :mod:`~shared.readmodel.models`: the pydantic answers.
"""
