"""The Dockerfile checked without Docker: what it installs, from what, and as whom."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.specifiers import SpecifierSet

from tests.deploy.files import (
    DOCKERFILE,
    DOCKERIGNORE,
    MAKEFILE,
    PYPROJECT,
    ROOT,
    PipCommand,
    Stage,
    dockerfile_pip_commands,
    make_prerequisites,
    make_recipe,
    pip_command,
    shell_commands,
    split_extras,
    stages,
)

PROJECT = tomllib.loads(PYPROJECT.read_text())["project"]
# Extras that only hold tools for developing and testing: never in the image.
DEV_TOOL_EXTRAS = {"dev"}
# What pip itself is asked to upgrade is the installer, not a requirement.
INSTALLER = {"pip"}


def makefile_install_extras() -> frozenset[str]:
    """Extras of the project the Makefile's ``install`` recipe installs into .venv."""
    text = MAKEFILE.read_text()
    (stamp,) = make_prerequisites(text, "install")
    extras: set[str] = set()
    commands = [
        command
        for line in make_recipe(text, stamp)
        for words in shell_commands(line)
        if (command := pip_command(words))
    ]
    assert commands, "the install recipe runs no pip install"
    for command in commands:
        assert not command.requirement_files, "requirements come from pyproject.toml only"
        for target in command.targets:
            base, wanted = split_extras(target)
            if base in INSTALLER:
                continue
            assert base == ".", f"the Makefile installs {target}, not the project"
            extras |= wanted
    return frozenset(extras)


def project_extras(command: PipCommand, wheel_dirs: set[str]) -> list[frozenset[str]]:
    """The extras of each project target of a Dockerfile pip command.

    The project is ``.`` (the build context's copy), ``streamloop`` by name, or a
    ``.whl`` in a directory that a ``pip wheel`` of the project wrote.
    """
    out = []
    for target in command.targets:
        base, wanted = split_extras(target)
        if base in INSTALLER:
            continue
        wheel_of_project = base.endswith(".whl") and str(Path(base).parent) in wheel_dirs
        assert base in {".", PROJECT["name"]} or wheel_of_project, (
            f"the Dockerfile installs {target}: every requirement must come from pyproject.toml"
        )
        out.append(wanted)
    return out


def test_the_image_installs_what_the_makefile_installs_minus_dev_tools() -> None:
    """The image installs what ``make install`` puts in .venv, minus the dev tools.

    "The same" means: (1) both name only the project to pip (``.``, ``streamloop``
    or the project's own wheel), never another package or a requirements file, so
    every requirement and version range comes from pyproject.toml (the Makefile's
    pip upgrading itself is not counted); (2) every project install or wheel in
    the Dockerfile asks for the same extras, equal to the extras of the Makefile's
    ``install`` recipe minus DEV_TOOL_EXTRAS. So the image gets
    ``[project].dependencies`` plus exactly the runtime extras .venv gets (today
    none: .venv's only extra is ``dev``). Editable (``-e``) or not does not count.
    """
    expected = makefile_install_extras() - DEV_TOOL_EXTRAS
    assert set(PROJECT["optional-dependencies"]) >= DEV_TOOL_EXTRAS
    commands = [
        command for _, _, command in dockerfile_pip_commands(stages(DOCKERFILE.read_text()))
    ]
    assert commands, "the Dockerfile runs no pip install"
    wheel_dirs = {
        command.wheel_dir
        for command in commands
        if command.subcommand == "wheel" and command.wheel_dir
    }
    for command in commands:
        assert not command.requirement_files, "requirements come from pyproject.toml only"
        for extras in project_extras(command, wheel_dirs):
            assert extras == expected, f"the Dockerfile asks for {sorted(extras)}"


def dependency_steps() -> list[tuple[Stage, int, PipCommand]]:
    return [
        (stage, index, command)
        for stage, index, command in dockerfile_pip_commands(stages(DOCKERFILE.read_text()))
        if not command.no_deps
    ]


def test_dependencies_are_installed_before_the_code_is_copied() -> None:
    """Each step that resolves dependencies has only pyproject.toml from the build
    context, so its layer stays cached while the code changes."""
    all_stages = {stage.name: stage for stage in stages(DOCKERFILE.read_text()) if stage.name}
    steps = dependency_steps()
    assert steps
    for stage, index, _ in steps:
        copied: list[str] = []
        current: Stage | None = stage
        limit = index
        while current is not None:
            for instruction in current.instructions[:limit]:
                if instruction.keyword in {"COPY", "ADD"} and not any(
                    flag.startswith("--from") for flag in instruction.flags
                ):
                    copied += instruction.args.split()[:-1]
            current = all_stages.get(current.base)
            limit = len(current.instructions) if current else 0
        assert copied in ([], ["pyproject.toml"]), f"dependencies resolved after COPY {copied}"


def test_the_image_installs_dependencies_then_code() -> None:
    """The image's own pip steps: every dependency (from the wheels stage, no index),
    then the code alone; nothing is fetched or built in the image itself."""
    all_stages = stages(DOCKERFILE.read_text())
    final = all_stages[-1]
    installs = [
        command for stage, _, command in dockerfile_pip_commands(all_stages) if stage is final
    ]
    assert [command.no_deps for command in installs] == [False, True]
    assert all("--no-index" in command.options for command in installs)
    assert not any(
        i.keyword in {"COPY", "ADD"} and not any(f.startswith("--from") for f in i.flags)
        for i in final.instructions
    ), "the image gets the code as a wheel, not as a source tree"


def test_the_base_image_is_a_slim_python_the_project_supports() -> None:
    all_stages = stages(DOCKERFILE.read_text())
    names = {stage.name for stage in all_stages}
    images = {stage.base for stage in all_stages if stage.base not in names}
    assert images, "no base image"
    for image in images:
        match = re.fullmatch(r"python:(3\.\d+)(?:\.\d+)?-slim(?:-\w+)?", image)
        assert match, f"{image} is not a slim Python image"
        assert match[1] in SpecifierSet(PROJECT["requires-python"]), image
    assert all_stages[-1].base in images, "the image itself starts from the slim base"


def test_the_image_runs_as_a_user_it_creates() -> None:
    final = stages(DOCKERFILE.read_text())[-1]
    users = [i.args for i in final.instructions if i.keyword == "USER"]
    assert users and users[-1] not in {"root", "0", "0:0"}, users
    runs = " ".join(i.args for i in final.instructions if i.keyword == "RUN")
    assert re.search(rf"useradd\b.*\b{re.escape(users[-1])}\b", runs)
    command = [i.args for i in final.instructions if i.keyword == "CMD"][-1]
    assert command.startswith('["python", "-m", "services.')


def test_the_build_context_has_what_is_copied_and_never_env() -> None:
    """.dockerignore excludes everything, then lets in what the Dockerfile copies."""
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for stage in stages(DOCKERFILE.read_text()):
        for instruction in stage.instructions:
            if instruction.keyword == "COPY" and not instruction.flags:
                for source in instruction.args.split()[:-1]:
                    assert source.rstrip("/") in allowed, f"COPY {source} is ignored"
                    assert (ROOT / source).exists(), source
    assert not any(name.startswith(".env") for name in allowed)


def test_the_packaged_files_are_declared_package_data() -> None:
    """The image runs the installed wheel, not the source tree, so every non-Python
    file in a package (the dashboard, its vendored scripts, the scenarios) must be
    matched by pyproject's package-data."""
    setuptools = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]
    package_data: dict[str, list[str]] = setuptools["package-data"]
    included = {
        path.resolve()
        for package, patterns in package_data.items()
        for pattern in patterns
        for path in (ROOT / package.replace(".", "/")).glob(pattern)
        if path.is_file()
    }
    data_files = {
        path.resolve()
        for top in ("shared", "services")
        for path in (ROOT / top).rglob("*")
        if path.is_file() and path.suffix not in {".py", ".pyc"} and "__pycache__" not in path.parts
    }
    assert data_files, "no package data found"
    assert data_files <= included, sorted(str(p.relative_to(ROOT)) for p in data_files - included)
