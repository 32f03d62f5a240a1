"""The command API, put together: the REST endpoints, the commands database with its outbox,
and the consumer of the write side's answers, which wakes the requests that wait for them."""

from __future__ import annotations

import asyncio
import logging
from functools import partial

import asyncpg
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware

from bank_command_api import problems
from bank_command_api.body_limit import BodySizeLimit
from bank_command_api.dispatch import Dispatcher
from bank_command_api.handlers import on_command_outcomes
from bank_command_api.idempotency import purge_expired_keys
from bank_command_api.login import router as login_router
from bank_command_api.routes import router
from bank_command_api.schemas import Problem
from bank_command_api.settings import CommandApiSettings
from bank_command_api.throttling import Throttle
from bank_command_api.waiting import DecisionListener
from bank_shared.auth import material
from bank_shared.contracts.outcomes import CommandOutcome
from bank_shared.service import EVENT_STORE, Platform
from bank_shared.topics import TopicSpec, transfer_topics

log = logging.getLogger(__name__)

# A POST that arrives before the listener first connected would only be answered by the
# re-read after its timeout; the start waits this long for it instead.
LISTENER_START_TIMEOUT = 30.0
# Expired Idempotency-Keys are deleted this often (seconds).
PURGE_KEYS_EVERY = 600.0

DESCRIPTION = """\
Send commands to the bank. Each POST is validated here, recorded and sent through Kafka to the
service that decides it, and answered with that decision (within `decision_timeout`, else
202 pending with a `Location` to poll; 202 pending at once, too, while `max_waiting` POSTs
wait already). Reads (balances, histories, transfer progress) are the query API's.

* Log in first: `POST /token` with a username and password (form-encoded) gives a bearer
  token; send it as `Authorization: Bearer <token>` (the Authorize button does this here).
* Money: euros as strings with at most two decimals, e.g. `"10.50"` (integers too).
* `Idempotency-Key`: retry safely; the same key and request answer the same, once.
* `Prefer: respond-async`: do not wait; 202 pending at once.
* Errors: `application/problem+json` with `code` and `message`.
"""


def command_api_topics(settings: CommandApiSettings) -> list[TopicSpec]:
    """The topics it writes to and reads from, shaped as their owners shape them."""
    topics = settings.topics
    used = {
        topics.account_commands,
        topics.transfer_commands,
        topics.command_outcomes,
        topics.dead_letters,
    }
    return [spec for spec in transfer_topics(topics) if spec.name in used]


def create_app(settings: CommandApiSettings | None = None) -> FastAPI:
    settings = settings or CommandApiSettings()
    platform = Platform(
        "command-api",
        settings,
        database=settings.pg.commands_db,
        migrations=[EVENT_STORE, "bank_command_api.migrations"],
        topics=command_api_topics(settings),
        relay=settings.relay,
    )
    listener = DecisionListener(settings.dsn)
    platform.background("decision listener", listener.run)
    platform.before_serving(
        lambda: asyncio.wait_for(listener.connected.wait(), LISTENER_START_TIMEOUT)
    )
    platform.background("idempotency key purge", partial(purge_keys_forever, platform))
    platform.consume(
        settings.topics.command_outcomes,
        partial(on_command_outcomes, platform),
        group_id=settings.consumer_group,
        accepts=(CommandOutcome,),
        dead_letters=platform.dead_letters(),
        title="on_command_outcomes",
        max_records=500,
    )
    app = platform.app(
        problem_model=Problem,
        title="Bank command API",
        version="1.0.0",
        description=DESCRIPTION,
        openapi_tags=[
            {"name": "login", "description": "A bearer token for a username and password."},
            {"name": "accounts", "description": "Open accounts, deposit and withdraw."},
            {"name": "transfers", "description": "Move money between accounts."},
            {"name": "commands", "description": "Follow a command that was not decided yet."},
            {"name": "operations", "description": "Health and readiness."},
        ],
    )
    app.state.settings = settings
    # Read now: a service without its keys should not start, and say why.
    app.state.users = material.users(settings.auth)
    app.state.issuer = material.token_issuer(settings.auth)
    app.state.tokens = material.token_verifier(settings.auth)
    app.state.throttle = Throttle.from_settings(settings)
    app.state.dispatcher = Dispatcher(
        platform,
        listener,
        decision_timeout=settings.decision_timeout,
        max_waiting=settings.max_waiting,
        relay=platform.relay,
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    # A page of another site that makes a browser reach this API through a name it controls
    # (DNS rebinding) sends that name as Host: refused.
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.trusted_hosts)
    # Added last, so it is outermost: refusals (413 too) carry the CORS headers, and a browser
    # page can read their problem+json.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.allowed_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Prefer"],
        expose_headers=["Location", "Retry-After"],
    )
    problems.install(app)
    app.include_router(login_router)
    app.include_router(router)
    return app


async def purge_keys_forever(platform: Platform) -> None:
    while True:
        await asyncio.sleep(PURGE_KEYS_EVERY)
        try:
            async with platform.pool.acquire() as conn:
                await purge_expired_keys(conn)
        except (OSError, asyncpg.PostgresError) as error:  # the next round tries again
            log.warning("could not delete expired Idempotency-Keys: %s", error)
