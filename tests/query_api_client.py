"""The query API in-process for tests: its settings on a read database, a client."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from bank_deploy.providers import Endpoints
from bank_query_api.app import create_app
from bank_query_api.routes import Reader
from bank_query_api.settings import QueryApiSettings
from tests.logins import bearer


def settings_for(infra: Endpoints, database: str, **overrides: Any) -> QueryApiSettings:
    pg = infra.pg.model_copy(update={"read_db": database})
    return QueryApiSettings(pg=pg, **overrides)


@dataclass
class Serving:
    client: httpx.AsyncClient
    app: FastAPI

    @property
    def reader(self) -> Reader:
        reader: Reader = self.app.state.reader
        return reader


@contextlib.asynccontextmanager
async def serving(settings: QueryApiSettings) -> AsyncIterator[Serving]:
    """The app with its lifespan running, and a client that talks to it in-process."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://query-api", headers=bearer()
        ) as client:
            yield Serving(client, app)
