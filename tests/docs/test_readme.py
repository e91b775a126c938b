"""The README stays true: its settings table matches the settings classes, and so
does .env.example."""

from __future__ import annotations

from tools.settings_table import ENV_EXAMPLE, README, env_example, replaced


def test_settings_table_is_up_to_date() -> None:
    text = README.read_text()
    assert replaced(text) == text, (
        "README settings table is stale: run python -m tools.settings_table --write"
    )


def test_env_example_is_up_to_date() -> None:
    assert ENV_EXAMPLE.read_text() == env_example(), (
        ".env.example is stale: run python -m tools.settings_table --write-env"
    )


def test_readme_opens_with_the_two_commands() -> None:
    opening = README.read_text()[:400]
    assert "make run" in opening and "make test" in opening
