"""Wiring: settings -> pool -> read-model migrations -> broker -> HTTP app (health only)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from faststream.kafka import KafkaRouter

from bank_projector.handlers import ParkingDeadLetters, build_router
from bank_projector.settings import ProjectorSettings
from bank_shared.runtime import Runtime, kafka_service_app, run_runtime
from bank_shared.topics import TopicSpec, transfer_topics


@contextlib.asynccontextmanager
async def run_projector(settings: ProjectorSettings) -> AsyncIterator[Runtime]:
    def routers(runtime: Runtime) -> list[KafkaRouter]:
        dead_letters = ParkingDeadLetters(
            runtime.producer, settings.topics.dead_letters, runtime.pool
        )
        return [build_router(settings, runtime.pool, dead_letters)]

    # The projector writes no events: no outbox, no relay. It creates the topics it reads so
    # it can start before the services that write them.
    topics: list[TopicSpec] = transfer_topics(settings.topics)
    async with run_runtime(
        name="projector",
        dsn=settings.dsn,
        kafka=settings.kafka,
        topics=topics,
        migrations=["bank_projector.migrations"],
        pool_size=settings.pool_size,
        routers=routers,
        relay=None,
    ) as runtime:
        yield runtime


def create_app(settings: ProjectorSettings | None = None) -> FastAPI:
    chosen = settings or ProjectorSettings()
    return kafka_service_app(
        "Bank projector",
        "Builds the read database from the account and transfer events; this HTTP side only"
        " reports health.",
        lambda: run_projector(chosen),
    )
