"""Browser files every service shares, shipped as package data of ``shared``.

``shared/vendor/`` holds the vendored browser libraries, one copy for the whole
repository: analytics serves the folder at ``/static/vendor/`` for the dashboard,
and retro inlines Chart.js from it into each report page. The folder has no
Python in it, so serving it whole shows nothing else; its ``README.md`` records
each file's package, version, licence and checksum, and how to update them.
"""

from __future__ import annotations

from pathlib import Path

VENDOR_DIR = Path(__file__).resolve().parent / "vendor"
CHART_JS = VENDOR_DIR / "chart.umd.min.js"
"""Chart.js (UMD build): the dashboard's charts and the report page's."""
