""".env.example: every setting, its default, secrets left to fill in.

That the file is what the settings classes generate is checked next to the README
(tests/docs/test_readme.py); here the file itself is read as the services read it.
"""

from __future__ import annotations

import os
import re

import pytest
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from shared.settings import BanditSettings, BaseServiceSettings, ConsumerSettings
from tests.deploy.files import SERVICE_SETTINGS
from tools.settings_table import COMPOSE_ONLY, ENV_EXAMPLE

CLASSES: list[type[BaseSettings]] = [
    BaseServiceSettings,
    ConsumerSettings,
    BanditSettings,
    *SERVICE_SETTINGS.values(),
]
LINE = re.compile(r"^(?P<commented># )?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


def entries() -> dict[str, tuple[bool, str]]:
    """``NAME -> (commented out, value)`` for each setting line of .env.example."""
    found: dict[str, tuple[bool, str]] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = LINE.match(line)
        if match:
            assert match["name"] not in found, f"{match['name']} twice"
            found[match["name"]] = (bool(match["commented"]), match["value"])
    return found


def test_every_setting_and_nothing_else() -> None:
    settings = {name.upper() for cls in CLASSES for name in cls.model_fields}
    compose_only = {name for name, _, _ in COMPOSE_ONLY}
    assert set(entries()) == settings | compose_only


def test_each_setting_has_a_comment_with_its_default() -> None:
    lines = ENV_EXAMPLE.read_text().splitlines()
    for number, line in enumerate(lines):
        if LINE.match(line):
            comment = lines[number - 1]
            assert comment.startswith("# ") and "Default: " in comment, line


def test_secrets_are_commented_out_and_empty() -> None:
    found = entries()
    for cls in CLASSES:
        for name, field in cls.model_fields.items():
            if isinstance(field.default, SecretStr) and not field.default.get_secret_value():
                assert found[name.upper()] == (True, ""), name


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_an_unchanged_copy_gives_the_defaults(
    cls: type[BaseSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in list(os.environ):
        if variable.lower() in cls.model_fields:
            monkeypatch.delenv(variable)
    from_file = cls(_env_file=ENV_EXAMPLE)  # type: ignore[call-arg]
    defaults = cls(_env_file=None)  # type: ignore[call-arg]
    assert from_file.model_dump() == defaults.model_dump()
