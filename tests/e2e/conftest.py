"""End-to-end fixtures: the whole bank as local processes, started by the same launcher
`make run` uses, on the session's Kafka and PostgreSQL, with topics and databases of its own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from bank_deploy.postgres import create_databases
from bank_deploy.providers import Endpoints, free_port, launcher_config_for_tests
from bank_deploy.services import SERVICES, LocalServices
from bank_shared.settings import PostgresSettings
from tests.conftest import drop_databases, session_databases
from tests.support import fresh_topics, service_env


@dataclass(frozen=True)
class Cluster:
    services: LocalServices
    command_api: str
    query_api: str
    commands_dsn: str
    # The databases of this cluster (its event stores, read model and command ledger).
    pg: PostgresSettings


@pytest.fixture(scope="session")
def cluster(infra: Endpoints) -> Iterator[Cluster]:
    pg = session_databases(infra.pg)
    asyncio.run(create_databases(pg))
    run = uuid.uuid4().hex[:8]
    env = (
        service_env(infra.kafka, pg, fresh_topics("e2e"))
        | {service.port_variable: str(free_port()) for service in SERVICES}
        | {
            "BANK_ACCOUNTS_CONSUMER_GROUP": f"e2e-{run}-accounts",
            "BANK_SAGA_COMMANDS_GROUP": f"e2e-{run}-saga-commands",
            "BANK_SAGA_ANSWERS_GROUP": f"e2e-{run}-saga-answers",
            "BANK_PROJECTOR_ACCOUNTS_GROUP": f"e2e-{run}-projector-accounts",
            "BANK_PROJECTOR_TRANSFERS_GROUP": f"e2e-{run}-projector-transfers",
            "BANK_COMMAND_API_CONSUMER_GROUP": f"e2e-{run}-command-api",
        }
    )
    query_api = f"http://127.0.0.1:{env['BANK_QUERY_API_HTTP_PORT']}"
    env["BANK_COMMAND_API_QUERY_API_URL"] = query_api
    # The web UI is served by the query API and sends commands from the browser.
    env["BANK_COMMAND_API_CORS_ORIGINS"] = query_api
    env["BANK_QUERY_API_COMMAND_API_URL"] = f"http://127.0.0.1:{env['BANK_COMMAND_API_HTTP_PORT']}"
    config = launcher_config_for_tests()
    services = LocalServices(
        config.model_copy(update={"state_dir": config.state_dir / "e2e"}), env=env
    )
    try:
        services.start()
        yield Cluster(
            services=services,
            command_api=f"http://127.0.0.1:{env['BANK_COMMAND_API_HTTP_PORT']}",
            query_api=query_api,
            commands_dsn=pg.dsn(pg.commands_db),
            pg=pg,
        )
    finally:
        services.stop()
        asyncio.run(drop_databases(pg))
