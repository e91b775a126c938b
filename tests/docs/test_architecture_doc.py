"""docs/architecture.md names only files and folders that exist, and the README links it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
TOP = ("services/", "shared/", "tools/", "tests/", "docs/")


def named_paths(text: str) -> set[str]:
    """Every `path` in backticks that starts with a top-level folder of the repository."""
    return {p for p in re.findall(r"`([\w./-]+)`", text) if p.startswith(TOP) and "{" not in p}


def test_every_path_the_map_names_exists() -> None:
    paths = named_paths(DOC.read_text())
    assert len(paths) > 20, "the map names the files a newcomer opens"
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert missing == [], f"docs/architecture.md names files that are gone: {missing}"


def test_every_service_package_is_on_the_map() -> None:
    text = DOC.read_text()
    for service in sorted(p.name for p in (ROOT / "services").iterdir() if p.is_dir()):
        if (ROOT / "services" / service / "__main__.py").exists():
            assert f"`services/{service}/`" in text, service


def test_the_readme_links_the_map() -> None:
    assert "(docs/architecture.md)" in (ROOT / "README.md").read_text()
