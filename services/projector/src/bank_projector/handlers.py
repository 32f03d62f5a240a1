"""Thin Kafka subscribers: each batch of account or transfer events, projected in two
statements."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from faststream.kafka import KafkaRouter
from pydantic import ValidationError

from bank_projector.projections import park, project
from bank_projector.settings import ProjectorSettings
from bank_shared.contracts.accounts import ACCOUNT_EVENTS
from bank_shared.contracts.envelope import Envelope, Message
from bank_shared.contracts.transfers import TRANSFER_EVENTS
from bank_shared.messaging.consume import DeadLetters, Record, subscribe_batches


class ParkingDeadLetters(DeadLetters):
    """Dead letters of the projector: the record goes to the dead-letter topic and, if it is
    an event of a stream, that stream is parked (see projections.park), so its later events
    are not gaps that stop the whole partition."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, pool: asyncpg.Pool[Any]) -> None:
        super().__init__(producer, topic)
        self.pool = pool

    async def send(self, record: Record, reason: str) -> None:
        await super().send(record, reason)
        try:
            envelope: Envelope | None = Envelope.model_validate_json(record.value or b"")
        except ValidationError:
            envelope = None
        async with self.pool.acquire() as conn:
            await park(conn, envelope, reason)


def build_router(
    settings: ProjectorSettings, pool: asyncpg.Pool[Any], dead_letters: DeadLetters
) -> KafkaRouter:
    router = KafkaRouter()

    async def on_events(batch: list[tuple[Envelope, Message]]) -> None:
        # No transaction: each write of `project` is one statement (see there).
        async with pool.acquire() as conn:
            await project(conn, batch)

    topics = settings.topics
    subscribe_batches(
        router,
        topics.account_events,
        group_id=settings.accounts_group,
        handle=on_events,
        dead_letters=dead_letters,
        max_records=settings.max_records,
        accepts=lambda m: isinstance(m, ACCOUNT_EVENTS),
    )
    subscribe_batches(
        router,
        topics.transfer_events,
        group_id=settings.transfers_group,
        handle=on_events,
        dead_letters=dead_letters,
        max_records=settings.max_records,
        accepts=lambda m: isinstance(m, TRANSFER_EVENTS),
    )
    return router
