"""Test-session wiring: the infrastructure is started once per run and stopped at the end."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from bank_deploy.postgres import create_databases
from bank_deploy.processes import LauncherError
from bank_deploy.providers import Endpoints, provide_infra
from bank_shared.settings import PostgresSettings
from tests.logins import use_session_logins

use_session_logins()

# The suite sends many more requests a second, from one address and mostly as the teller, than
# people would, and its in-process clients name the app by its service name: its own limits
# and hosts, for the session and the processes it starts. The rate limit and trusted host
# tests set theirs (tests/integration/test_limits.py).
os.environ.update(
    {
        "BANK_COMMAND_API_RATE_LIMIT_WRITES": "",
        "BANK_COMMAND_API_RATE_LIMIT_WRITES_PER_ADDRESS": "",
        "BANK_COMMAND_API_RATE_LIMIT_LOGINS": "",
        "BANK_COMMAND_API_RATE_LIMIT_LOGINS_PER_ADDRESS": "",
        "BANK_COMMAND_API_ALLOWED_HOSTS": "127.0.0.1,localhost,command-api,api",
        "BANK_QUERY_API_ALLOWED_HOSTS": "127.0.0.1,localhost,query-api",
    }
)

# The outbox relay's fixtures (a database and topics of a test's own), for every test folder.
pytest_plugins = ("tests.outbox_history",)


def session_databases(pg: PostgresSettings) -> PostgresSettings:
    """The bank's databases under names of this session's own: every run starts empty, so a
    test may compare a whole read model with whole event stores."""
    run = uuid.uuid4().hex[:8]
    return pg.model_copy(
        update={
            "accounts_db": f"{pg.accounts_db}_{run}",
            "transfers_db": f"{pg.transfers_db}_{run}",
            "read_db": f"{pg.read_db}_{run}",
            "commands_db": f"{pg.commands_db}_{run}",
        }
    )


async def drop_databases(pg: PostgresSettings) -> None:
    conn = await asyncpg.connect(pg.dsn("postgres"))
    try:
        for database in pg.databases:
            await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def infra() -> Iterator[Endpoints]:
    """Kafka and PostgreSQL for the whole session; see bank_deploy.providers for the choice."""
    with contextlib.ExitStack() as stack:
        try:
            endpoints = stack.enter_context(provide_infra())
        except LauncherError as error:
            # One message for the session, not the same traceback under every test.
            pytest.exit(f"No infrastructure for the tests: {error}", returncode=1)
        pg = session_databases(endpoints.pg)
        asyncio.run(create_databases(pg))
        try:
            yield dataclasses.replace(endpoints, pg=pg)
        finally:
            asyncio.run(drop_databases(pg))
