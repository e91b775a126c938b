"""docker-compose.yml (and its Twitch override) checked without Docker.

The files are validated against the compose-spec schema by check-jsonschema, then
cross-checked against the code: services, commands, variables and ports must be
the ones the service packages and settings classes really have.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from services.ingest.settings import IngestSettings
from services.ingest.sources.twitch import TwitchSetupError, TwitchSource
from tests.deploy.files import (
    COMPOSE,
    DOCKERFILE,
    OVERRIDES,
    ROOT,
    SERVICE_SETTINGS,
    environment,
    load_compose,
    references,
    stages,
    strings,
    with_defaults,
)
from tools.settings_table import COMPOSE_ONLY, env_value

COMPOSE_ONLY_NAMES = {name for name, _, _ in COMPOSE_ONLY}
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")
ALL_FILES = [COMPOSE, *OVERRIDES]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose(COMPOSE)


def services_of(path: Path) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = load_compose(path)["services"]
    return services


def default_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services ``docker compose up`` starts: those in no profile."""
    return {name: svc for name, svc in compose["services"].items() if "profiles" not in svc}


def app_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in default_services(compose).items() if name != "redis"}


def schema_check(*paths: Path) -> subprocess.CompletedProcess[str]:
    assert CHECK_JSONSCHEMA.exists(), "check-jsonschema is missing: make install (dev extra)"
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_compose_files_match_the_compose_spec() -> None:
    result = schema_check(*ALL_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  web:\n    image: x\n    ports: 8000\n    restart_policy: 1\n")
    result = schema_check(broken)
    assert result.returncode != 0, "check-jsonschema accepted an invalid compose file"


def test_the_services_are_redis_and_the_four_apps(compose: dict[str, Any]) -> None:
    assert set(default_services(compose)) == {"redis", *SERVICE_SETTINGS}


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_depends_on_names_services_that_exist(path: Path, compose: dict[str, Any]) -> None:
    """An override configures services of docker-compose.yml (a misspelt name would
    silently add a broken service) or adds whole ones, with their own image."""
    services = services_of(path)
    known = set(compose["services"]) | set(services)
    for name, service in services.items():
        added = name not in compose["services"]
        assert not added or "image" in service, (
            f"{path.name} configures {name}, which docker-compose.yml lacks"
        )
        for target in service.get("depends_on", {}):
            assert target in known, f"{name} depends on {target}, which does not exist"


def test_every_command_runs_a_real_service(compose: dict[str, Any]) -> None:
    for name, service in app_services(compose).items():
        assert service["command"] == ["python", "-m", f"services.{name}"], name
        assert (ROOT / "services" / name / "__main__.py").is_file(), name


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_every_variable_is_a_setting_of_its_service(path: Path) -> None:
    """Variables set under ``environment`` or interpolated anywhere in a service are
    fields of that service's settings class, or one of the listed compose-only ones."""
    data = load_compose(path)
    for name, service in data["services"].items():
        fields = set(SERVICE_SETTINGS[name].model_fields) if name in SERVICE_SETTINGS else set()
        # other images (redis_exporter, Grafana) read variables of their own
        for variable in environment(service) if name in SERVICE_SETTINGS else ():
            assert variable.lower() in fields, f"{name} sets {variable}, not one of its settings"
        for text in strings(service):
            for ref in references(text):
                known = ref.name.lower() in fields or ref.name in COMPOSE_ONLY_NAMES
                assert known, f"{name} reads ${{{ref.name}}}, neither its setting nor compose-only"
    outside = {key: value for key, value in data.items() if key != "services"}
    for text in strings(outside):
        refs = references(text)
        assert all(ref.name in COMPOSE_ONLY_NAMES for ref in refs), text


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_interpolation_defaults_are_the_settings_defaults(path: Path) -> None:
    compose_only = {name: default for name, default, _ in COMPOSE_ONLY}
    for name, service in load_compose(path)["services"].items():
        for text in strings(service):
            for ref in references(text):
                if ref.op not in {"-", ":-"}:
                    continue
                if ref.name in compose_only:
                    assert ref.arg == compose_only[ref.name], text
                    continue
                field = SERVICE_SETTINGS[name].model_fields[ref.name.lower()]
                default = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
                assert ref.arg == env_value(default), f"{name}: {text}"


def test_ports_are_the_settings_defaults(compose: dict[str, Any]) -> None:
    for name, service in app_services(compose).items():
        variable = f"{name.upper()}_PORT"
        default = SERVICE_SETTINGS[name].model_fields[f"{name}_port"].default
        assert environment(service)[variable] == f"${{{variable}:-{default}}}", name
        check = " ".join(service["healthcheck"]["test"])
        assert f"http://127.0.0.1:${{{variable}:-{default}}}/healthz" in check, name
        for published in service.get("ports", []):
            host_ip, host_port, container_port = with_defaults(published).split(":")
            assert (host_port, container_port) == (str(default), str(default)), published
            assert published.endswith(f":${{{variable}:-{default}}}"), published
            assert host_ip == "127.0.0.1", "publish on the host's loopback by default"
    exposed = {
        int(port)
        for stage in stages(DOCKERFILE.read_text())[-1:]
        for instruction in stage.instructions
        if instruction.keyword == "EXPOSE"
        for port in instruction.args.split()
    }
    assert exposed == {
        cls.model_fields[f"{name}_port"].default for name, cls in SERVICE_SETTINGS.items()
    }


def test_only_the_dashboard_is_published(compose: dict[str, Any]) -> None:
    published = {name for name, svc in default_services(compose).items() if svc.get("ports")}
    assert published == {"analytics"}


def test_redis_keeps_an_append_only_file_on_a_named_volume(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert redis["image"].split(":")[1].split("-")[0] == "7", redis["image"]
    command = redis["command"]
    assert command[0] == "redis-server" and command[command.index("--appendonly") + 1] == "yes"
    volume, target = redis["volumes"][0].split(":")[:2]
    assert target == "/data" and volume in compose["volumes"], redis["volumes"]
    assert "redis-cli ping" in " ".join(redis["healthcheck"]["test"])
    assert "ports" not in redis and "expose" not in redis


def test_the_orchestrator_can_scale(compose: dict[str, Any]) -> None:
    """``--scale orchestrator=3``: no fixed port, name or replica id to collide on."""
    orchestrator = compose["services"]["orchestrator"]
    for key in ("ports", "container_name", "hostname"):
        assert key not in orchestrator, key
    assert environment(orchestrator)["REPLICA_ID"] == ""


def test_every_app_service_is_checked_and_waits_for_redis(compose: dict[str, Any]) -> None:
    for name, service in app_services(compose).items():
        test = service["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"], f"{name}: slim images have no curl"
        assert "/healthz" in test[3] and "urlopen" in test[3], name
        assert service["depends_on"]["redis"] == {"condition": "service_healthy"}, name
    assert compose["services"]["redis"]["healthcheck"]["test"]


def test_app_services_reach_redis_and_listen_for_the_healthcheck(
    compose: dict[str, Any],
) -> None:
    for name, service in app_services(compose).items():
        env = environment(service)
        assert env["REDIS_URL"] == "redis://redis:6379/0", name
        assert env["BIND_HOST"] == "0.0.0.0", name
        assert service["image"] == "streamloop:local" and service["build"] == ".", name
        assert service["env_file"] == [{"path": ".env", "required": False}], name


def test_data_is_on_a_volume_the_image_lets_the_user_write(compose: dict[str, Any]) -> None:
    """The bandit's backup (orchestrator, retro) and the reports (retro) live under the
    image's working directory's ``data/``, which compose puts on one named volume and
    the Dockerfile creates owned by the non-root user."""
    final = stages(DOCKERFILE.read_text())[-1]
    workdir = [i.args for i in final.instructions if i.keyword == "WORKDIR"][-1]
    user = [i.args for i in final.instructions if i.keyword == "USER"][-1]
    data_dir = f"{workdir}/data"
    mounts = {
        name: svc.get("volumes", []) for name, svc in compose["services"].items() if name != "redis"
    }
    volumes = {m.split(":")[0] for name in ("orchestrator", "retro") for m in mounts[name]}
    assert len(volumes) == 1 and volumes <= set(compose["volumes"]), mounts
    for name in ("orchestrator", "retro"):
        assert f"{next(iter(volumes))}:{data_dir}" in mounts[name], name
    for name in ("orchestrator", "retro"):
        settings = SERVICE_SETTINGS[name]
        for field in ("bandit_state_path", "retro_dir"):
            if field in settings.model_fields:
                assert settings.model_fields[field].default.startswith("data/"), field
    runs = " ".join(i.args for i in final.instructions if i.keyword == "RUN")
    assert f"install -d -o {user} -g {user} {data_dir}" in runs


def test_the_default_source_needs_no_secret(compose: dict[str, Any]) -> None:
    required = [ref for text in strings(compose) for ref in references(text) if ref.required]
    assert required == [], "docker compose config must work with an empty .env"
    assert environment(compose["services"]["ingest"]).get("INGEST_SOURCES", "sim") == "sim"
    assert IngestSettings.model_fields["ingest_sources"].default == ["sim"]


async def test_the_twitch_override_requires_what_the_source_needs() -> None:
    """The override fails fast on exactly the settings the twitch source refuses to run
    without, each with a message naming it."""
    override = load_compose(ROOT / "docker-compose.twitch.yml")["services"]["ingest"]
    assert environment(override)["INGEST_SOURCES"] == "twitch"
    required = {}
    for text in strings(override):
        for ref in references(text):
            assert ref.required, f"{text}: the override only adds required credentials"
            assert ref.name in ref.arg, f"{text}: the message should name the variable"
            required[ref.name] = ref
    empty = {
        name: ""
        for name, info in IngestSettings.model_fields.items()
        if name.startswith("twitch_") and env_value(info.default) in ("", None)
    }
    source = TwitchSource(IngestSettings(_env_file=None, **empty), buffer=None)  # type: ignore[arg-type]
    with pytest.raises(TwitchSetupError) as refused:
        await asyncio.wait_for(source.run(asyncio.Event()), 5)
    needed = {word.strip(",") for word in str(refused.value).split() if word.startswith("TWITCH_")}
    assert needed and set(required) == needed


def test_every_service_is_restarted_when_it_exits(compose: dict[str, Any]) -> None:
    """A crashed or exited service comes back by itself (docker restarts it)."""
    policies = {name: svc.get("restart") for name, svc in compose["services"].items()}
    assert set(policies.values()) <= {"unless-stopped", "always"}, policies


def test_ingest_keeps_its_journal_on_a_named_volume_the_user_owns(
    compose: dict[str, Any],
) -> None:
    """Events ingest held while Redis was down survive a recreated container: its
    ``INGEST_SPILL_DIR`` is a named volume, created in the image owned by the user (a
    new named volume copies the image's directory, ownership included)."""
    ingest = compose["services"]["ingest"]
    spill_dir = environment(ingest)["INGEST_SPILL_DIR"]
    mounts = dict(mount.split(":")[:2][::-1] for mount in ingest["volumes"])
    assert mounts[spill_dir] in compose["volumes"], ingest["volumes"]
    assert mounts[spill_dir] not in {
        m.split(":")[0]
        for name in ("orchestrator", "retro")
        for m in compose["services"][name]["volumes"]
    }, "the journal is ingest's alone"
    final = stages(DOCKERFILE.read_text())[-1]
    user = [i.args for i in final.instructions if i.keyword == "USER"][-1]
    runs = " ".join(i.args for i in final.instructions if i.keyword == "RUN")
    assert f"install -d -o {user} -g {user}" in runs and spill_dir in runs


def test_each_app_answers_its_service_name_and_the_operators_hosts(
    compose: dict[str, Any],
) -> None:
    """Services reach each other (and a scraper reaches them) by service name; anything
    else must be named in ALLOWED_HOSTS, which .env can still extend."""
    for name, service in app_services(compose).items():
        assert environment(service)["ALLOWED_HOSTS"] == f"{name},${{ALLOWED_HOSTS:-}}", name
