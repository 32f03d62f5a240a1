"""What a Kafka-driven service runs on, and how it runs: its PostgreSQL pool (and migrations),
its topics, a FastStream broker, the outbox relay and its background tasks, started in that
order and stopped in reverse; an HTTP app that answers /health and /ready; and `serve()`.

Each service's app.py is its composition root: it makes a Platform, builds its parts on it,
registers its subscribers and returns `platform.app(...)`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any

import asyncpg
import uvicorn
from fastapi import APIRouter, FastAPI, Request, Response
from faststream.kafka import KafkaBroker
from pydantic import BaseModel

from bank_shared.db import create_pool
from bank_shared.eventstore.migrate import migrate
from bank_shared.eventstore.relay import OutboxRelay
from bank_shared.eventstore.store import check_stored_versions
from bank_shared.eventstore.unit_of_work import Storage
from bank_shared.http.openapi import ProblemsApp
from bank_shared.messaging.consume import Batch, BatchConsumer, M, subscribe
from bank_shared.messaging.dead_letters import DeadLetters
from bank_shared.messaging.kafka import ensure_topics
from bank_shared.settings import RelaySettings, ServiceSettings
from bank_shared.topics import TopicSpec

log = logging.getLogger(__name__)

# The event store's tables (events, outbox, processed messages, the relay's lease).
EVENT_STORE = "bank_shared.eventstore.migrations"
# A readiness probe must answer quickly even when a dependency does not.
CHECK_TIMEOUT = 2.0


class Platform:
    """One service instance's resources."""

    def __init__(
        self,
        name: str,
        settings: ServiceSettings,
        *,
        database: str,
        migrations: Sequence[str],
        topics: Sequence[TopicSpec],
        relay: RelaySettings | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.dsn = settings.pg.dsn(database)
        self.migrations = migrations
        self.topics = topics
        # Publishes dead letters and answers to unprocessable commands. The relay has its own
        # producer: a new one per leadership, so a failed round never continues half-sent.
        self.broker = KafkaBroker(
            settings.kafka.bootstrap,
            client_id=name,
            enable_idempotence=True,
            acks="all",
            logger=log,
            # FastStream logs every batch it hands over at this level: not at INFO.
            log_level=logging.DEBUG,
        )
        self.relay = (
            None
            if relay is None
            else OutboxRelay(self.dsn, settings.kafka, relay, name=f"{name}-relay-{database}")
        )
        self._pool: asyncpg.Pool[Any] | None = None
        self._consumers: list[BatchConsumer[Any]] = []
        self._background: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._before_serving: list[Callable[[], Awaitable[object]]] = []

    @property
    def started(self) -> bool:
        return self._pool is not None

    @property
    def pool(self) -> asyncpg.Pool[Any]:
        if self._pool is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._pool

    def dead_letters(self, *, answers: Storage | None = None) -> DeadLetters:
        """Dead letters; with `answers` (an event store's), a command among them is answered
        `rejected` and recorded as processed there."""
        return DeadLetters(
            self.broker,
            self.settings.topics.dead_letters,
            answers=answers,
            topics=self.settings.topics,
        )

    def consume(
        self,
        topic: str,
        handle: Callable[[Batch[M]], Awaitable[object]],
        *,
        group_id: str,
        accepts: tuple[type[M], ...],
        dead_letters: DeadLetters | None,
        title: str,
        max_records: int = 100,
    ) -> None:
        """Hand each batch of `topic` to `handle` (messaging/consume.py says how)."""
        consumer = BatchConsumer(handle, accepts, dead_letters)
        subscribe(
            self.broker, consumer, topic, group_id=group_id, title=title, max_records=max_records
        )
        self._consumers.append(consumer)

    def background(self, name: str, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run `work` while the service runs (cancelled when it stops)."""
        self._background.append((name, work))

    def before_serving(self, wait: Callable[[], Awaitable[object]]) -> None:
        """Wait for `wait()` once everything is started, before the app serves requests."""
        self._before_serving.append(wait)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Start everything in dependency order; stop in reverse, consumers first."""
        self._pool = await create_pool(self.dsn, size=self.settings.pool_size)
        try:
            async with self.pool.acquire() as conn:
                if applied := await migrate(conn, *self.migrations):
                    log.info("%s: applied migrations %s", self.name, applied)
                if EVENT_STORE in self.migrations:
                    await check_stored_versions(conn, self.name)
            await ensure_topics(self.settings.kafka, self.topics)
            if self.relay is not None:
                self._tasks.append(asyncio.create_task(self.relay.run(), name="outbox relay"))
            for name, work in self._background:
                self._tasks.append(asyncio.create_task(work(), name=name))
            try:
                await self.broker.start()
                for wait in self._before_serving:
                    await wait()
                yield
            finally:
                # Consumers first: what they applied is committed before they close. Rows the
                # relay has not sent yet are sent by the next leader of the outbox.
                await asyncio.gather(*(consumer.stop() for consumer in self._consumers))
                await self.broker.stop()
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks.clear()
            await self.pool.close()
            self._pool = None

    async def readiness(self) -> dict[str, str]:
        """Each dependency's state: "ok" or what is wrong with it."""
        checks: dict[str, str] = {}
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                await self.pool.fetchval("SELECT 1")
            checks["postgres"] = "ok"
        except (
            OSError,
            TimeoutError,
            RuntimeError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
        ) as error:
            checks["postgres"] = f"unreachable: {error or type(error).__name__}"
        checks["kafka"] = "ok" if await self.broker.ping(timeout=CHECK_TIMEOUT) else "unreachable"
        for task in self._tasks:
            if task.done():
                checks[task.get_name()] = "stopped"
        return checks

    def app(
        self,
        *,
        title: str,
        description: str,
        problem_model: type[BaseModel] | None = None,
        **options: Any,
    ) -> FastAPI:
        """The service's HTTP app: it runs the platform for its lifespan and answers /health
        and /ready; a service with an API adds its routes to it (and its `problem_model`)."""

        @contextlib.asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            async with self.running():
                yield

        app = ProblemsApp(title=title, description=description, lifespan=lifespan, **options)
        app.problem_model = problem_model
        app.state.platform = self
        app.include_router(health)
        return app


health = APIRouter(tags=["operations"])


@health.get("/health", summary="The process is alive")
async def alive() -> dict[str, str]:
    return {"status": "ok"}


@health.get(
    "/ready",
    summary="PostgreSQL and Kafka answer",
    responses={
        503: {"description": "Starting, or a dependency is unreachable; `checks` says which"}
    },
)
async def ready(request: Request, response: Response) -> dict[str, Any]:
    platform: Platform = request.app.state.platform
    if not platform.started:
        response.status_code = 503
        return {"status": "starting", "checks": {}}
    checks = await platform.readiness()
    healthy = all(state == "ok" for state in checks.values())
    response.status_code = 200 if healthy else 503
    return {"status": "ready" if healthy else "not_ready", "checks": checks}


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    """Run a service's app until it is stopped (SIGTERM or Ctrl-C)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_level="info",
        limit_concurrency=settings.http_limit_concurrency,
    )
