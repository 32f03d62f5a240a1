"""docker-compose.yml checked without a Docker engine: every service is there, runs a real
module of the shared image, sets only variables the code reads, and sets the ones a container
cannot leave at their local defaults; ports match the docs. `make docker-smoke` runs it for
real."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from bank_accounts.settings import AccountsSettings
from bank_command_api.settings import CommandApiSettings
from bank_projector.settings import ProjectorSettings
from bank_query_api.settings import QueryApiSettings
from bank_shared.settings import KafkaSettings, PostgresSettings
from bank_shared.topics import TopicSettings
from bank_transfers_saga.settings import SagaSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, type[BaseSettings]] = {
    "accounts": AccountsSettings,
    "transfers-saga": SagaSettings,
    "projector": ProjectorSettings,
    "command-api": CommandApiSettings,
    "query-api": QueryApiSettings,
}
SHARED = (KafkaSettings, PostgresSettings, TopicSettings)
# Published to the host, as the README says.
PUBLISHED = {"command-api": 8001, "query-api": 8002}
# One-shot containers that prepare what a service needs, and the service that waits for each.
ONE_SHOT = {"command-api-auth": "command-api"}


def variables(settings: type[BaseSettings]) -> set[str]:
    """The environment variables a settings class (and the shared ones it nests) reads."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    names = set()
    for name, field in settings.model_fields.items():
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseSettings):
            names |= variables(nested)
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def environment(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in COMPOSE["services"][service]["environment"].items()}


def test_the_infrastructure_and_all_five_services_are_defined() -> None:
    assert set(COMPOSE["services"]) == {"kafka", "postgres", *SERVICES, *ONE_SHOT}


@pytest.mark.parametrize("service", ["kafka", "postgres", *SERVICES, *ONE_SHOT])
def test_each_image_is_the_one_make_images_builds_from_a_dockerfile_of_ours(
    service: str,
) -> None:
    definition = COMPOSE["services"][service]
    image = "services" if service in SERVICES or service in ONE_SHOT else service
    assert definition["image"] == f"bank/{image}"
    build = definition["build"]
    assert build["dockerfile"] == f"deploy/docker/{image}/Dockerfile"
    assert (ROOT / build["context"] / build["dockerfile"]).is_file()


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_runs_its_own_module(service: str) -> None:
    python, flag, module = COMPOSE["services"][service]["command"]
    assert (python, flag) == ("python", "-m")
    assert module == "bank_" + service.replace("-", "_")
    assert importlib.util.find_spec(f"{module}.__main__") is not None


@pytest.mark.parametrize(("service", "settings"), SERVICES.items())
def test_each_service_sets_only_variables_it_reads(
    service: str, settings: type[BaseSettings]
) -> None:
    unknown = set(environment(service)) - variables(settings)
    # The compose-wide block also carries variables of the other services' shared settings.
    unknown -= set().union(*(variables(s) for s in SHARED))
    assert unknown == set()


@pytest.mark.parametrize(("service", "settings"), SERVICES.items())
def test_each_service_sets_what_a_container_cannot_leave_at_its_local_default(
    service: str, settings: type[BaseSettings]
) -> None:
    prefix = str(settings.model_config["env_prefix"])
    needed = {
        f"{prefix}HTTP_HOST",
        f"{prefix}HTTP_PORT",
        "BANK_PG_HOST",
        "BANK_PG_PORT",
        "BANK_PG_USER",
        "BANK_PG_PASSWORD",
    }
    if "BANK_KAFKA_BOOTSTRAP_SERVERS" in variables(settings):
        needed.add("BANK_KAFKA_BOOTSTRAP_SERVERS")
    env = environment(service)
    assert needed <= set(env)
    assert env[f"{prefix}HTTP_HOST"] == "0.0.0.0"
    assert env["BANK_PG_HOST"] == "postgres"
    if "BANK_KAFKA_BOOTSTRAP_SERVERS" in env:
        assert env["BANK_KAFKA_BOOTSTRAP_SERVERS"].startswith("kafka:")


@pytest.mark.parametrize(("service", "settings"), SERVICES.items())
def test_each_service_listens_where_the_docs_say_and_reports_its_health_there(
    service: str, settings: type[BaseSettings]
) -> None:
    definition = COMPOSE["services"][service]
    prefix = str(settings.model_config["env_prefix"])
    port = int(environment(service)[f"{prefix}HTTP_PORT"])
    assert port == settings.model_fields["http_port"].default
    assert f"127.0.0.1:{port}/ready" in " ".join(definition["healthcheck"]["test"])
    prepared = {
        one_shot: {"condition": "service_completed_successfully"}
        for one_shot, waiting in ONE_SHOT.items()
        if waiting == service
    }
    assert definition["depends_on"] == {
        "kafka": {"condition": "service_healthy"},
        "postgres": {"condition": "service_healthy"},
        **prepared,
    }
    published = [str(p) for p in definition.get("ports", [])]
    if service in PUBLISHED:
        assert published == [f"127.0.0.1:{PUBLISHED[service]}:{PUBLISHED[service]}"]
    else:
        assert published == [], "only the two APIs are published (others scale freely)"


def test_the_database_names_match_the_init_script() -> None:
    init = (ROOT / "deploy" / "postgres" / "init.sql").read_text()
    env = environment("accounts")
    for variable in (
        "BANK_PG_ACCOUNTS_DB",
        "BANK_PG_TRANSFERS_DB",
        "BANK_PG_READ_DB",
        "BANK_PG_COMMANDS_DB",
    ):
        assert f"CREATE DATABASE {env[variable]};" in init


def test_the_web_ui_reaches_the_command_api_where_the_host_publishes_it() -> None:
    """The pages run in the browser on the host: the command API's address is the published
    one, and it allows the query API's published origin."""
    query_api = f"http://127.0.0.1:{PUBLISHED['query-api']}"
    command_api = f"http://127.0.0.1:{PUBLISHED['command-api']}"
    assert environment("query-api")["BANK_QUERY_API_COMMAND_API_URL"] == command_api
    origins = environment("command-api")["BANK_COMMAND_API_CORS_ORIGINS"].split(",")
    assert query_api in origins


def mounts(service: str) -> dict[str, dict[str, Any]]:
    """A service's mounts by target, in the long form (short ones are `source:target[:ro]`)."""
    found = {}
    for volume in COMPOSE["services"][service].get("volumes", []):
        if isinstance(volume, str):
            source, target, *options = volume.split(":")
            volume = {"source": source, "target": target, "read_only": options == ["ro"]}
        found[volume["target"]] = volume
    return found


def test_each_api_gets_only_the_login_material_it_needs_read_only() -> None:
    """The command API signs tokens and checks passwords: its copy of the keys and users, made
    by a one-shot container. The query API only checks tokens: the public key alone."""
    host_auth = "${BANK_AUTH_DIR:-${BANK_STATE_DIR:-./.bank}/auth}"
    copy = COMPOSE["services"]["command-api-auth"]
    assert mounts("command-api-auth")["/host-auth"]["source"] == host_auth
    copied = [arg.removeprefix("/host-auth/") for arg in copy["command"] if "/host-auth/" in arg]
    assert sorted(copied) == ["token-signing-key.pem", "token-verifying-key.pem", "users.json"]
    assert "--mode=0400" in copy["command"]

    command_api = environment("command-api")["BANK_AUTH_DIR"]
    assert mounts("command-api")[command_api] == {
        "source": "command-api-auth",
        "target": command_api,
        "read_only": True,
    }
    query_api = environment("query-api")["BANK_AUTH_DIR"]
    assert list(mounts("query-api")) == [f"{query_api}/token-verifying-key.pem"]
    key = mounts("query-api")[f"{query_api}/token-verifying-key.pem"]
    assert key["source"] == f"{host_auth}/token-verifying-key.pem"
    assert key["read_only"] is True
