"""Wiring: settings -> pool -> relay -> outcome consumer + decision listener -> HTTP app."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from faststream.kafka import KafkaRouter

from bank_command_api import openapi, problems
from bank_command_api.body_limit import BodySizeLimit
from bank_command_api.dispatch import Dispatcher
from bank_command_api.handlers import build_router
from bank_command_api.routes import command_routes
from bank_command_api.settings import CommandApiSettings
from bank_command_api.waiting import DecisionListener
from bank_shared.eventstore.relay import RelaySettings
from bank_shared.messaging.consume import DeadLetters
from bank_shared.runtime import Runtime, health_routes, run_runtime
from bank_shared.topics import TopicSpec, transfer_topics

# A POST that arrives before the listener first connected would only be answered by the
# re-read after its timeout; the start waits this long for it instead.
LISTENER_START_TIMEOUT = 30.0


@dataclass(frozen=True)
class CommandApi:
    runtime: Runtime
    dispatcher: Dispatcher


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


@contextlib.asynccontextmanager
async def run_command_api(settings: CommandApiSettings) -> AsyncIterator[CommandApi]:
    listener = DecisionListener(settings.dsn)

    def routers(runtime: Runtime) -> list[KafkaRouter]:
        dead_letters = DeadLetters(runtime.producer, settings.topics.dead_letters)
        return [
            build_router(
                settings.topics, runtime.pool, dead_letters, group_id=settings.consumer_group
            )
        ]

    def background(_: Runtime) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        return [("decision listener", listener.run())]

    async with run_runtime(
        name="command-api",
        dsn=settings.dsn,
        kafka=settings.kafka,
        topics=command_api_topics(settings),
        migrations=["bank_shared.eventstore.migrations", "bank_command_api.migrations"],
        pool_size=settings.pool_size,
        routers=routers,
        relay=RelaySettings(
            lease_key=settings.relay_lease_key,
            lease_duration=settings.relay_lease_duration,
            poll_interval=settings.relay_poll_interval,
            linger=settings.relay_linger,
            linger_min_rate=settings.relay_linger_min_rate,
        ),
        background=background,
    ) as runtime:
        await asyncio.wait_for(listener.connected.wait(), LISTENER_START_TIMEOUT)
        dispatcher = Dispatcher(
            runtime.pool,
            listener,
            decision_timeout=settings.decision_timeout,
            max_waiting=settings.max_waiting,
            relay=runtime.relay,
        )
        yield CommandApi(runtime, dispatcher)


DESCRIPTION = """\
Send commands to the bank. Each POST is validated here, recorded and sent through Kafka to the
service that decides it, and answered with that decision (within `decision_timeout`, else
202 pending with a `Location` to poll; 202 pending at once, too, while `max_waiting` POSTs
wait already). Reads (balances, histories, transfer progress) are the query API's.

* Money: euros as strings with at most two decimals, e.g. `"10.50"` (integers too).
* `Idempotency-Key`: retry safely; the same key and request answer the same, once.
* `Prefer: respond-async`: do not wait; 202 pending at once.
* Errors: `application/problem+json` with `code` and `message`.
"""


def create_app(settings: CommandApiSettings | None = None) -> FastAPI:
    settings = settings or CommandApiSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with run_command_api(settings) as api:
            app.state.runtime = api.runtime
            app.state.dispatcher = api.dispatcher
            yield

    app = FastAPI(
        title="Bank command API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "accounts", "description": "Open accounts, deposit and withdraw."},
            {"name": "transfers", "description": "Move money between accounts."},
            {"name": "commands", "description": "Follow a command that was not decided yet."},
            {"name": "operations", "description": "Health and readiness."},
        ],
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    # Added last, so it is outermost: refusals (413 too) carry the CORS headers, and a browser
    # page can read their problem+json.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.allowed_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type", "Idempotency-Key", "Prefer"],
        expose_headers=["Location", "Retry-After"],
    )
    problems.install(app)
    openapi.install(app)
    app.include_router(command_routes(settings))
    app.include_router(health_routes())
    return app
