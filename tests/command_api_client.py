"""The command API in-process for tests: its settings on the session's infra, a client."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI

from bank_command_api.app import create_app
from bank_command_api.settings import CommandApiSettings
from bank_deploy.providers import Endpoints
from bank_shared.topics import TopicSettings
from tests.logins import bearer
from tests.support import new_id

QUERY_API = "http://query-api.test"


def settings_for(infra: Endpoints, topics: TopicSettings, **overrides: Any) -> CommandApiSettings:
    values: dict[str, Any] = {
        "kafka": infra.kafka,
        "pg": infra.pg,
        "topics": topics,
        "consumer_group": f"command-api-{uuid.uuid4().hex[:8]}",
        "relay_poll_interval": 0.2,
        # The first answers of a session also wait for the consumer groups to join.
        "decision_timeout": 30.0,
        "query_api_url": QUERY_API,
    }
    return CommandApiSettings(**{**values, **overrides})


@contextlib.asynccontextmanager
async def serving(settings: CommandApiSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, and a client that talks to it in-process."""
    async with serving_app(settings) as (client, _):
        yield client


@contextlib.asynccontextmanager
async def serving_app(
    settings: CommandApiSettings,
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    """As `serving`, and the app itself, for tests that look at its state."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://command-api", headers=bearer()
        ) as client:
            yield client, app


async def open_account(api: httpx.AsyncClient, balance: str, owner: str = "Test") -> str:
    account = new_id(owner.lower())
    answer = await api.post(
        "/accounts", json={"owner": owner, "initial_balance": balance, "account_id": account}
    )
    assert answer.status_code == 201, answer.text
    return account


async def sent_so_far(settings: CommandApiSettings) -> tuple[int, int]:
    """Rows in `commands` and `outbox`: what this API has recorded and sent."""
    conn = await asyncpg.connect(settings.dsn)
    try:
        commands: int = await conn.fetchval("SELECT count(*) FROM commands")
        outbox: int = await conn.fetchval("SELECT count(*) FROM outbox")
        return commands, outbox
    finally:
        await conn.close()
