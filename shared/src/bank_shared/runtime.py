"""What a Kafka-driven service runs on: a pool, its migrations, its topics, a producer, the
outbox relay and a FastStream broker, started in order and stopped in reverse; plus the
`/health` and `/ready` routes that report on them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, FastAPI, Request, Response
from faststream.kafka import KafkaBroker, KafkaRouter

from bank_shared.db import create_pool
from bank_shared.eventstore.migrate import migrate
from bank_shared.eventstore.relay import OutboxRelay, RelaySettings
from bank_shared.messaging.kafka import ensure_topics, make_producer
from bank_shared.settings import KafkaSettings
from bank_shared.topics import TopicSpec

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The started resources of one service instance."""

    name: str
    pool: asyncpg.Pool[Any]
    producer: AIOKafkaProducer
    broker: KafkaBroker
    relay: OutboxRelay | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def readiness(self) -> dict[str, str]:
        """Each dependency's state: "ok" or what is wrong with it."""
        checks: dict[str, str] = {}
        try:
            async with asyncio.timeout(2):
                await self.pool.fetchval("SELECT 1")
            checks["postgres"] = "ok"
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            checks["postgres"] = f"unreachable: {error or type(error).__name__}"
        checks["kafka"] = "ok" if await self.broker.ping(timeout=2) else "unreachable"
        for task in self.tasks:
            if task.done():
                checks[task.get_name()] = "stopped"
        return checks


@contextlib.asynccontextmanager
async def run_runtime(
    *,
    name: str,
    dsn: str,
    kafka: KafkaSettings,
    topics: Iterable[TopicSpec],
    migrations: Iterable[str],
    pool_size: int,
    routers: Callable[[Runtime], Iterable[KafkaRouter]],
    relay: RelaySettings | None,
    background: Callable[[Runtime], Iterable[tuple[str, Coroutine[Any, Any, None]]]] = (
        lambda _: ()
    ),
) -> AsyncIterator[Runtime]:
    """Start everything in dependency order; stop in reverse, consumers first."""
    pool = await create_pool(dsn, size=pool_size)
    try:
        async with pool.acquire() as conn:
            applied = await migrate(conn, *migrations)
        if applied:
            log.info("%s: applied migrations %s", name, applied)
        await ensure_topics(kafka, topics)
        producer = make_producer(kafka, client_id=name)
        await producer.start()
        try:
            # FastStream logs "Received" and "Processed" for every batch at `log_level`: at
            # INFO that was a formatted log line per hop of every transfer in every service.
            # No FastDepends: every subscriber takes the message itself (see
            # `the_message_itself` in messaging/consume.py).
            broker = KafkaBroker(
                kafka.bootstrap,
                client_id=name,
                logger=log,
                log_level=logging.DEBUG,
                apply_types=False,
            )
            runtime = Runtime(name=name, pool=pool, producer=producer, broker=broker)
            if relay is not None:
                # Made before the routers, so the writers can hand it their committed rows.
                # The relay's client name says which database it publishes.
                database = dsn.rsplit("/", 1)[-1]
                runtime.relay = OutboxRelay(
                    dsn, kafka, relay, name=f"{name}-outbox-relay-{database}"
                )
            for router in routers(runtime):
                broker.include_router(router)
            try:
                if runtime.relay is not None:
                    runtime.tasks.append(
                        asyncio.create_task(runtime.relay.run(), name="outbox relay")
                    )
                for task_name, work in background(runtime):
                    runtime.tasks.append(asyncio.create_task(work, name=task_name))
                await broker.start()
                yield runtime
            finally:
                # Consumers stop before the relay: what they committed is still published.
                await broker.stop()
                for task in runtime.tasks:
                    task.cancel()
                await asyncio.gather(*runtime.tasks, return_exceptions=True)
        finally:
            await producer.stop()
    finally:
        await pool.close()


def health_routes() -> APIRouter:
    """`/health`: the process answers. `/ready`: its PostgreSQL and Kafka connections work."""
    router = APIRouter(tags=["operations"])

    @router.get("/health", summary="The process is alive")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/ready",
        summary="PostgreSQL and Kafka answer",
        responses={503: {"description": "A dependency is unreachable; the body says which"}},
    )
    async def ready(request: Request, response: Response) -> dict[str, Any]:
        runtime: Runtime | None = getattr(request.app.state, "runtime", None)
        if runtime is None:
            response.status_code = 503
            return {"status": "starting", "checks": {}}
        checks = await runtime.readiness()
        healthy = all(state == "ok" for state in checks.values())
        response.status_code = 200 if healthy else 503
        return {"status": "ready" if healthy else "not_ready", "checks": checks}

    return router


def kafka_service_app(
    title: str, description: str, run: Callable[[], AbstractAsyncContextManager[Runtime]]
) -> FastAPI:
    """The HTTP face of a Kafka-only service: the runtime lives for the app's lifespan, and
    the app answers /health and /ready (and keeps /docs, like every service)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with run() as runtime:
            app.state.runtime = runtime
            yield

    app = FastAPI(title=title, description=description, lifespan=lifespan)
    app.include_router(health_routes())
    return app
