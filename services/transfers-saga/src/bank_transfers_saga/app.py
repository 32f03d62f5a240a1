"""Wiring: settings -> pool -> topics -> producer -> relay -> broker + step timer -> HTTP app."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from fastapi import FastAPI
from faststream.kafka import KafkaRouter

from bank_shared.eventstore.relay import RelaySettings
from bank_shared.messaging.consume import DeadLetters
from bank_shared.runtime import Runtime, kafka_service_app, run_runtime
from bank_shared.topics import transfer_topics
from bank_transfers_saga.handlers import build_router
from bank_transfers_saga.saga import TransferSaga
from bank_transfers_saga.settings import SagaSettings


@contextlib.asynccontextmanager
async def run_saga(settings: SagaSettings) -> AsyncIterator[Runtime]:
    sagas: list[TransferSaga] = []

    def saga_for(runtime: Runtime) -> TransferSaga:
        if not sagas:
            sagas.append(
                TransferSaga(
                    runtime.pool,
                    settings.topics,
                    step_timeout=settings.step_timeout,
                    max_step_backoff=settings.max_step_backoff,
                    max_conflict_retries=settings.max_conflict_retries,
                    known_transfers=settings.known_transfers,
                    relay=runtime.relay,
                    dead_letters=DeadLetters(runtime.producer, settings.topics.dead_letters),
                )
            )
        return sagas[0]

    def routers(runtime: Runtime) -> list[KafkaRouter]:
        topics = settings.topics
        # A StartTransfer that cannot be processed is answered (rejected); an answer is not.
        command_letters = DeadLetters(runtime.producer, topics.dead_letters, answer_commands=topics)
        answer_letters = DeadLetters(runtime.producer, topics.dead_letters)
        return [build_router(settings, saga_for(runtime), command_letters, answer_letters)]

    def background(runtime: Runtime) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        timer = saga_for(runtime).resend_forever(settings.resend_check_interval)
        return [("overdue steps", timer)]

    async with run_runtime(
        name="transfers-saga",
        dsn=settings.dsn,
        kafka=settings.kafka,
        topics=transfer_topics(settings.topics),
        migrations=["bank_shared.eventstore.migrations", "bank_transfers_saga.migrations"],
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
        yield runtime


def create_app(settings: SagaSettings | None = None) -> FastAPI:
    chosen = settings or SagaSettings()
    return kafka_service_app(
        "Bank transfers saga",
        "Runs transfers (withdraw, deposit, refund) over Kafka; this HTTP side only reports"
        " health.",
        lambda: run_saga(chosen),
    )
