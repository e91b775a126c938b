"""``make bench``: measured figures, written into ``docs/benchmarks.md``.

Each benchmark runs against its own embedded ``redis-server`` (so nothing else
shares the server while it is measured) and rewrites its own section of the
doc, between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``.

``BENCHMARKS`` is the one registration point: a section's name and the function
returning its Markdown body. The benchmarks live one module each in
``tools/benchmarks/``, beside the harness they share (``harness.py``: writing a
section, uvloop; ``measure.py``: CPU, memory, percentiles; ``children.py`` and
``roles.py``: helper processes). ``python -m tools.bench NAME...`` runs only those.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import tools.benchmarks.analytics_consume as analytics_consume
import tools.benchmarks.analytics_fanout as analytics_fanout
import tools.benchmarks.analytics_latency as analytics_latency
import tools.benchmarks.harness as harness
import tools.benchmarks.history as history
import tools.benchmarks.idle_cost as idle_cost
import tools.benchmarks.publisher as publisher
import tools.benchmarks.scale as scale
import tools.benchmarks.slow_clients as slow_clients
from tools import bench_claude, bench_orchestrator
from tools.bench_bandit import bench_bandit_regret
from tools.bench_learning import bench_learning

BENCHMARKS: dict[str, Callable[[], str]] = {
    "publisher": publisher.bench_publisher,
    "bandit-regret": bench_bandit_regret,
    "analytics-consume": analytics_consume.bench_consume,
    "analytics-latency": analytics_latency.bench_latency,
    "analytics-fanout": analytics_fanout.bench_fanout,
    "slow-clients": slow_clients.bench_slow_clients,
    "orchestrator-decision": bench_orchestrator.bench_decision,
    "orchestrator-claude": bench_claude.bench_claude,
    "learning": bench_learning,
    "history": history.bench_history,
    "idle-cost": idle_cost.bench_idle_cost,
    "scale": scale.bench_scale,
}


def main(names: list[str]) -> int:
    """Run the named benchmarks (all by default), print and record each."""
    for name in names or list(BENCHMARKS):
        print(f"== {name}", flush=True)
        body = BENCHMARKS[name]()
        print(body, flush=True)
        harness.write_section(name, body)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
