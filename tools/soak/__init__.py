"""``make soak``: every service under a steady live load for minutes; memory must stay flat.

Starts its own ``redis-server`` (AOF off unless ``--aof``, no RDB saves), the four
services as subprocesses the way ``make run`` does (``tools.run_local``), on free
ports, with the simulator off (ingest runs its webhooks only) and the orchestrator
on the bandit alone. The load comes from this process: a realistic mix (the
simulator's own event makers and the default scenario's relative rates: mostly
chat, some donations, bits, subs, resubs, gifts and follows, a viewer count every
``viewer_count_interval_s``) on 1 to 3 channels, opened with ``stream_started``
and closed with ``stream_ended``, published through :class:`shared.publisher.Publisher`
at a steady ``--rate`` paced per 100 ms tick, every ``ts`` read off the wall clock
so the services' event-time windows behave as live. Activity changes the
orchestrator publishes switch the mix, as they would switch the simulator's.

Every ``--sample-s`` it records Redis ``used_memory``, key counts, stream
lengths, consumer-group lag, each process's RSS and CPU time and the achieved
publish rate; at a quarter of the run and at its end it takes a census of the
keys (``MEMORY USAGE`` of every key but the per-event dedupe markers, which are
counted and sampled). At the end it publishes ``stream_ended``, waits for the
consumers to drain and the retro report, stops the services with SIGINT (each
exits 0 with a summary line) and writes section ``soak`` of
``docs/benchmarks.md``. A service that dies stops the run with exit code 1 and
nothing written.
"""

from __future__ import annotations

MB = 1024 * 1024


def say(message: str) -> None:
    """A progress line of the soak itself."""
    print(f"soak    | {message}", flush=True)
