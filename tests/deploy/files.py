"""Reading the deployment files without Docker: compose files, the Dockerfile, the Makefile.

No Docker engine runs where the suite does, so the tests parse these files and
check them against the code: the settings classes, the service packages, pyproject.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic_settings import BaseSettings

from services.analytics.settings import AnalyticsSettings
from services.ingest.settings import IngestSettings
from services.orchestrator.settings import OrchestratorSettings
from services.retro.settings import RetroSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
CLUSTER_OVERRIDE = ROOT / "docker-compose.cluster.yml"
OVERRIDES = [ROOT / "docker-compose.twitch.yml", CLUSTER_OVERRIDE]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
MAKEFILE = ROOT / "Makefile"
PYPROJECT = ROOT / "pyproject.toml"

# Each app service of the compose file and the settings class it reads.
SERVICE_SETTINGS: dict[str, type[BaseSettings]] = {
    "ingest": IngestSettings,
    "analytics": AnalyticsSettings,
    "orchestrator": OrchestratorSettings,
    "retro": RetroSettings,
}


def load_compose(path: Path) -> dict[str, Any]:
    """A compose file as docker compose sees it before interpolation (merge keys applied)."""
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path.name} is not a mapping"
    return data


# ---- interpolation ----------------------------------------------------------------------

_VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


@dataclass(frozen=True)
class Reference:
    """One ``$VAR`` / ``${VAR...}`` in a compose string."""

    name: str
    op: str  # "", "-", ":-", "?", ":?", "+", ":+"
    arg: str

    @property
    def required(self) -> bool:
        return self.op in {"?", ":?"}


def references(text: str) -> list[Reference]:
    """Every variable ``text`` interpolates (``$$`` is a literal dollar)."""
    text = text.replace("$$", "")
    found = []
    for match in _VARIABLE.finditer(text):
        if match["bare"]:
            found.append(Reference(match["bare"], "", ""))
        else:
            assert "$" not in match["arg"], f"nested interpolation in {text!r}"
            found.append(Reference(match["braced"], match["op"] or "", match["arg"]))
    return found


def with_defaults(text: str) -> str:
    """``text`` interpolated with every variable unset: ``${X:-d}`` becomes ``d``."""

    def value(match: re.Match[str]) -> str:
        assert match["op"] in {"-", ":-"}, f"{match[0]} has no default"
        return match["arg"]

    return _VARIABLE.sub(value, text)


def strings(node: Any) -> list[str]:
    """Every string in a parsed YAML tree, mapping keys included."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in [*strings(key), *strings(value)]]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return []


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's ``environment``, list or mapping form, as a mapping."""
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


# ---- Dockerfile -------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str
    flags: list[str] = field(default_factory=list)  # RUN/COPY --flags


@dataclass
class Stage:
    base: str  # resolved: an image or an earlier stage's name
    name: str | None
    instructions: list[Instruction]


def dockerfile_instructions(text: str) -> list[Instruction]:
    """The instructions, continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "Dockerfile ends inside a continued line"
    out = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        flags = []
        rest = rest.strip()
        while keyword.upper() in {"RUN", "COPY", "ADD"} and rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            flags.append(flag)
            rest = rest.strip()
        out.append(Instruction(keyword.upper(), rest, flags))
    return out


def stages(text: str) -> list[Stage]:
    """The build stages in order, each FROM's ``${ARG}`` resolved from the global ARGs."""
    args: dict[str, str] = {}
    found: list[Stage] = []
    for instruction in dockerfile_instructions(text):
        if instruction.keyword == "ARG" and not found:
            name, _, default = instruction.args.partition("=")
            args[name] = default
        elif instruction.keyword == "FROM":
            parts = instruction.args.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m[1] or m[2]], parts[0])
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            found.append(Stage(base, name, []))
        else:
            assert found, f"{instruction.keyword} before the first FROM"
            found[-1].instructions.append(instruction)
    return found


# ---- pip commands (Dockerfile RUN lines and Makefile recipes) ---------------------------

# pip options that take a value as the next word.
_VALUE_OPTIONS = {
    "-w",
    "--wheel-dir",
    "-f",
    "--find-links",
    "-i",
    "--index-url",
    "--extra-index-url",
    "-t",
    "--target",
    "--prefix",
    "--root",
    "--src",
    "--upgrade-strategy",
    "--cache-dir",
    "--progress-bar",
    "--platform",
    "--python-version",
    "--implementation",
    "--abi",
    "--only-binary",
    "--no-binary",
}
_REQUIREMENT_FILE_OPTIONS = {"-r", "--requirement", "-c", "--constraint"}


@dataclass
class PipCommand:
    """One ``pip install`` / ``pip wheel``: what it names and the options it was given."""

    subcommand: str
    targets: list[str]
    options: set[str]
    wheel_dir: str | None
    requirement_files: list[str]

    @property
    def no_deps(self) -> bool:
        return "--no-deps" in self.options


def shell_commands(script: str) -> list[list[str]]:
    """``script`` split into simple commands at ``&&``, ``||``, ``;`` and ``|``."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in {"&&", "||", ";", "|", "&"}:
            commands.append([])
        else:
            commands[-1].append(token)
    return [command for command in commands if command]


def pip_command(words: list[str]) -> PipCommand | None:
    """The pip install/wheel that ``words`` runs, or None for any other command."""
    program = words[0].rsplit("/", 1)[-1]
    if program in {"pip", "pip3"}:
        rest = words[1:]
    elif program.startswith("python") and words[1:3] == ["-m", "pip"]:
        rest = words[3:]
    else:
        return None
    if not rest or rest[0] not in {"install", "wheel"}:
        return None
    command = PipCommand(rest[0], [], set(), None, [])
    tokens = iter(rest[1:])
    for token in tokens:
        if token in {"-e", "--editable"}:
            command.options.add(token)
            command.targets.append(next(tokens))
        elif token in _REQUIREMENT_FILE_OPTIONS:
            command.requirement_files.append(next(tokens))
        elif token in _VALUE_OPTIONS:
            value = next(tokens)
            if token in {"-w", "--wheel-dir"}:
                command.wheel_dir = value
        elif token.startswith("-"):
            name, _, value = token.partition("=")
            command.options.add(name)
            if name == "--wheel-dir":
                command.wheel_dir = value
        else:
            command.targets.append(token)
    return command


def dockerfile_pip_commands(all_stages: list[Stage]) -> list[tuple[Stage, int, PipCommand]]:
    """Every pip install/wheel in the stages' RUN lines: its stage, its index there."""
    found = []
    for stage in all_stages:
        for index, instruction in enumerate(stage.instructions):
            if instruction.keyword != "RUN":
                continue
            for words in shell_commands(instruction.args):
                command = pip_command(words)
                if command:
                    found.append((stage, index, command))
    return found


def make_expand(text: str, makefile: str) -> str:
    """``text`` with the Makefile's ``$(NAME)`` variables expanded (``NAME := ...``)."""
    values = dict(re.findall(r"^([A-Za-z_]+)\s*[:?]?=\s*(.*)$", makefile, flags=re.M))
    for _ in range(10):
        text = re.sub(r"\$\((\w+)\)", lambda m: values.get(m[1], m[0]), text)
    return text


def make_recipe(text: str, target: str) -> list[str]:
    """The recipe lines of ``target``'s rule in a Makefile, variables expanded."""
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if re.match(rf"^{re.escape(target)}\s*:(?!=)", line):
            recipe = []
            for following in lines[number + 1 :]:
                if not following.startswith("\t"):
                    break
                recipe.append(make_expand(following.strip().lstrip("@"), text))
            return recipe
    raise AssertionError(f"no rule for {target} in the Makefile")


def make_prerequisites(text: str, target: str) -> list[str]:
    """The prerequisites of ``target``'s rule."""
    match = re.search(rf"^{re.escape(target)}\s*:(?!=)(.*)$", text, flags=re.M)
    assert match, f"no rule for {target} in the Makefile"
    return match[1].split()


_EXTRAS = re.compile(r"^(?P<base>[^\[]+)(?:\[(?P<extras>[^\]]*)\])?$")


def split_extras(target: str) -> tuple[str, frozenset[str]]:
    """``".[dev,bench]"`` -> ``(".", {"dev", "bench"})``."""
    match = _EXTRAS.match(target)
    assert match, f"cannot read pip target {target!r}"
    extras = match["extras"] or ""
    return match["base"], frozenset(e.strip() for e in extras.split(",") if e.strip())
