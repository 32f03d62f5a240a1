"""The query API, put together: the read database and its change listener, the REST
endpoints and the web UI. No Kafka: it reads only what the projector wrote."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware

from bank_query_api import changes, problems, web
from bank_query_api.changes import ChangeStreams
from bank_query_api.freshness import ReadModelChanges
from bank_query_api.health import health_routes
from bank_query_api.routes import Reader, router
from bank_query_api.schemas import Problem
from bank_query_api.settings import QueryApiSettings
from bank_shared.auth.material import token_verifier
from bank_shared.db import create_pool
from bank_shared.http.bearer import BearerToken, actor_of
from bank_shared.http.openapi import ProblemsApp

# A `min_version` request that arrives before the listener first connected would only be
# woken by the periodic re-read; the start waits this long for it instead.
LISTENER_START_TIMEOUT = 30.0


@contextlib.asynccontextmanager
async def reading(settings: QueryApiSettings, reader: Reader) -> AsyncIterator[None]:
    """The read database's pool and its change listener, for as long as the app runs."""
    pool = await create_pool(settings.dsn, size=settings.pool_size)
    listening = asyncio.create_task(reader.changes.run(), name="read model listener")
    try:
        await asyncio.wait_for(reader.changes.connected.wait(), LISTENER_START_TIMEOUT)
        reader.started_pool = pool
        yield
    finally:
        reader.started_pool = None
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        await pool.close()


DESCRIPTION = """\
Read the bank: balances, account histories and transfer progress, from the read model the
projector builds out of the write side's events. Writes go to the command API.

* Every route that returns bank data needs a bearer token: log in with `POST /token` on the
  command API (the Authorize button does), then send `Authorization: Bearer <access_token>`.
  A customer reads their own accounts, their events and the transfers from or to them (the
  other side's account id, not its holder); a teller reads everything. Anything else reads as
  not there: 404, as for an id that does not exist.
* The read model follows the write side by a moment. To read your own write, pass the
  `version` the command API answered as `?min_version=`: the answer waits (bounded) until the
  read model has it, else 503 `not_yet_projected` with `Retry-After`.
* Money: euros as strings with exactly two decimals, e.g. `"10.50"`. Times: ISO 8601, UTC.
* Lists: `limit` (default 50) and `offset`; `total` counts every match you may see.
* Errors: `application/problem+json` with `code` and `message`.
* `GET /changes` streams an event each time the read model changes; the web UI at `/ui/` uses
  it to stay current without reloading.
* Each process keeps at most so many change streams open and so many `min_version` requests
  waiting; past that: 503 with `Retry-After`.
"""


def create_app(settings: QueryApiSettings | None = None) -> FastAPI:
    settings = settings or QueryApiSettings()
    streams = ChangeStreams(settings.max_change_streams)

    reader = Reader(ReadModelChanges(settings.dsn), max_waiters=settings.max_version_waiters)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with reading(settings, reader):
            try:
                yield
            finally:
                streams.close()

    app = ProblemsApp(
        title="Bank query API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "accounts", "description": "Balances and account histories."},
            {"name": "transfers", "description": "Transfers and how far each got."},
            {"name": "live", "description": "Follow the read model as it changes."},
            {"name": "operations", "description": "Health and readiness."},
        ],
    )
    app.problem_model = Problem
    # The server ends open change streams with this before it waits for responses to finish.
    app.state.streams = streams
    app.state.settings = settings
    app.state.reader = reader
    # The public key only: this API checks tokens, it cannot make them.
    app.state.tokens = token_verifier(settings.auth)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.allowed_origins,
        allow_methods=["GET"],
        allow_headers=["*"],
        # A browser client needs it to honour a 503's back-off.
        expose_headers=["Retry-After"],
    )
    # Outermost: a page of another site that reaches this API through a name it controls
    # (DNS rebinding) sends that name as Host, and is refused before anything is read.
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.trusted_hosts)
    problems.install(app)
    # Every route of bank data, behind a token from the command API's `POST /token` (its
    # address in the OpenAPI document, so /docs can log in). Health and the pages stay open.
    authenticated = [Depends(actor_of(BearerToken(settings.token_url)))]
    app.include_router(router, dependencies=authenticated)
    app.include_router(changes.router, dependencies=authenticated)
    app.include_router(health_routes())
    web.install(app)
    return app
