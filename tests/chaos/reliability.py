"""What each chaos test measured, kept for ``docs/reliability.md``.

A test calls :func:`record` with its fault class, how many times the fault was
injected, what held and its figures; the row is written as JSON to
``build/reliability/<row id>.json``. ``python -m tools.reliability --write``
renders the doc's table from those files after a test run, and
``tests/docs/test_reliability_doc.py`` checks the doc names every chaos test
with the trial counts the tests use, so the table cannot drift from the tests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parents[2] / "build" / "reliability"


def record(row_id: str, fault: str, tries: int, held: str, **figures: Any) -> None:
    """Write one row: ``row_id`` (stable), the fault, times injected, what held, numbers."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    row = {"id": row_id, "fault": fault, "tries": tries, "held": held, "figures": figures}
    (RESULTS_DIR / f"{row_id}.json").write_text(json.dumps(row, indent=2) + "\n")
