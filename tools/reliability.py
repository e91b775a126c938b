"""``python -m tools.reliability --write``: the fault table of ``docs/reliability.md``.

The chaos tests (``tests/chaos``) each write what they injected and measured to
``build/reliability/<id>.json`` (see ``tests/chaos/reliability.py``). This tool
renders those rows as the table between ``<!-- reliability:faults -->`` and
``<!-- /reliability:faults -->`` in the doc. ``tests/docs/test_reliability_doc.py``
checks, after the chaos tests ran, that the doc's stable columns (fault, tries,
what held, events lost and doubled) are exactly what the tests just found;
timings are the last run's and are not compared.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "build" / "reliability"
DOC = ROOT / "docs" / "reliability.md"
BLOCK = re.compile(r"<!-- reliability:faults -->\n(.*?)<!-- /reliability:faults -->", re.S)
HEADER = (
    "| fault | tries | what held | lost | doubled | figures of the last run |\n"
    "|---|---:|---|---:|---:|---|\n"
)


def load_rows(results_dir: Path = RESULTS_DIR) -> list[dict[str, Any]]:
    """Every recorded row, sorted by id."""
    rows = [json.loads(path.read_text()) for path in results_dir.glob("*.json")]
    return sorted(rows, key=lambda row: row["id"])


def stable_cells(row: dict[str, Any]) -> list[str]:
    """The cells that must not change between runs: fault, tries, held, lost, doubled."""
    figures = row["figures"]
    return [
        f"{row['fault']} (`{row['id']}`)",
        str(row["tries"]),
        row["held"],
        str(figures.get("lost", "")),
        str(figures.get("doubled", "")),
    ]


def render_row(row: dict[str, Any]) -> str:
    """One Markdown table row: the stable cells, then the other figures."""
    others = {k: v for k, v in row["figures"].items() if k not in ("lost", "doubled")}
    text = "; ".join(f"{name.replace('_', ' ')} {value}" for name, value in others.items())
    return "| " + " | ".join([*stable_cells(row), text]) + " |"


def render_table(rows: list[dict[str, Any]]) -> str:
    """The whole table block content."""
    return HEADER + "".join(render_row(row) + "\n" for row in rows)


def doc_stable_cells(doc_text: str) -> list[list[str]]:
    """The stable cells of every row of the doc's fault table."""
    match = BLOCK.search(doc_text)
    if match is None:
        raise ValueError(f"{DOC} has no <!-- reliability:faults --> block")
    lines = match.group(1).strip().splitlines()[2:]
    return [[cell.strip() for cell in line.strip("|").split(" | ")][:5] for line in lines]


def write(rows: list[dict[str, Any]], doc: Path = DOC) -> None:
    """Replace the doc's fault table with ``rows``."""
    text = doc.read_text()
    block = f"<!-- reliability:faults -->\n{render_table(rows)}<!-- /reliability:faults -->"
    doc.write_text(BLOCK.sub(lambda _: block, text))


def main(argv: list[str]) -> int:
    """``--write`` rewrites the table; without it, print the table."""
    rows = load_rows()
    if not rows:
        print(f"no results in {RESULTS_DIR}: run `make test` (or pytest tests/chaos) first")
        return 1
    if "--write" in argv:
        write(rows)
        print(f"wrote {len(rows)} rows to {DOC}")
    else:
        print(render_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
