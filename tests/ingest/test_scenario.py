"""Scenario files: the shipped default, TOML and JSON loading, errors that name the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.ingest.sources.scenario import (
    DEFAULT_SCENARIO_PATH,
    ScenarioError,
    default_scenario,
    load_scenario,
    scenario_from_setting,
)

MINIMAL_TOML = """
initial_viewers = 50
initial_activity = "chill"

[activities.chill]
chat_msgs_per_min_per_100_viewers = 2.5
target_viewers = 40

[activities.hype]
chat_msgs_per_min_per_100_viewers = 40.0
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_default_loads_with_five_distinct_activities() -> None:
    scenario = default_scenario()
    assert set(scenario.activities) == {"talk", "q_and_a", "gameplay", "react", "music"}
    assert scenario.initial_activity in scenario.activities
    chat = {name: a.chat_msgs_per_min_per_100_viewers for name, a in scenario.activities.items()}
    assert chat["q_and_a"] > chat["talk"] > chat["music"]
    viewers = {name: a.target_viewers for name, a in scenario.activities.items()}
    assert max(viewers, key=viewers.__getitem__) == "gameplay"
    assert scenario_from_setting("") == scenario == load_scenario(DEFAULT_SCENARIO_PATH)


def test_toml_loads_and_omitted_fields_take_defaults(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, "s.toml", MINIMAL_TOML))
    assert scenario.initial_viewers == 50
    assert scenario.activities["chill"].chat_msgs_per_min_per_100_viewers == 2.5
    assert scenario.activities["chill"].target_viewers == 40
    assert scenario.activities["hype"].chatter_pool_users == 300


def test_json_loads_the_same_scenario_as_toml(tmp_path: Path) -> None:
    from_toml = load_scenario(write(tmp_path, "s.toml", MINIMAL_TOML))
    data = from_toml.model_dump(mode="json")
    from_json = load_scenario(write(tmp_path, "s.json", json.dumps(data)))
    assert from_json == from_toml


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (
            MINIMAL_TOML.replace("2.5", "-1"),
            "activities.chill.chat_msgs_per_min_per_100_viewers",
        ),
        (MINIMAL_TOML.replace("target_viewers = 40", "target_viewrs = 40"), "target_viewrs"),
        (MINIMAL_TOML.replace('"chill"\n', '"nap"\n', 1), "initial_activity"),
        (MINIMAL_TOML + "\ndonation_currency_weights = { XXX = 1 }", "donation_currency_weights"),
        (MINIMAL_TOML.replace("= 50", "= 'many'"), "initial_viewers"),
        ('initial_activity = "x"\n', "activities"),
    ],
)
def test_bad_file_error_names_the_field(tmp_path: Path, text: str, named: str) -> None:
    path = write(tmp_path, "bad.toml", text)
    with pytest.raises(ScenarioError, match=named) as caught:
        load_scenario(path)
    assert str(path) in str(caught.value)


def test_bad_syntax_and_unknown_extension_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="invalid TOML"):
        load_scenario(write(tmp_path, "broken.toml", "initial_viewers = = 3"))
    with pytest.raises(ScenarioError, match="invalid JSON"):
        load_scenario(write(tmp_path, "broken.json", "{"))
    with pytest.raises(ScenarioError, match=r"use \.toml or \.json"):
        load_scenario(write(tmp_path, "s.yaml", "a: 1"))
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.toml")
