"""Thin Kafka subscribers: each batch of account or transfer events, projected in one
transaction."""

from __future__ import annotations

from typing import Any

import asyncpg
from faststream.kafka import KafkaRouter

from bank_projector.projections import ACCOUNT_EVENT_TYPES, TRANSFER_EVENT_TYPES, project
from bank_projector.settings import ProjectorSettings
from bank_shared.contracts.envelope import Envelope, Message
from bank_shared.messaging.consume import subscribe_batches


def build_router(settings: ProjectorSettings, pool: asyncpg.Pool[Any]) -> KafkaRouter:
    router = KafkaRouter()

    async def on_events(batch: list[tuple[Envelope, Message]]) -> None:
        async with pool.acquire() as conn, conn.transaction():
            await project(conn, [envelope for envelope, _ in batch])

    # No dead letters: skipping one event would leave its stream behind for good (every later
    # event is a gap). An event the projector cannot apply stops its partition, loudly, until
    # the cause (e.g. a newer event type) is fixed.
    topics = settings.topics
    subscribe_batches(
        router,
        topics.account_events,
        group_id=settings.accounts_group,
        handle=on_events,
        dead_letters=None,
        max_records=settings.max_records,
        accepts=lambda m: type(m).__name__ in ACCOUNT_EVENT_TYPES,
    )
    subscribe_batches(
        router,
        topics.transfer_events,
        group_id=settings.transfers_group,
        handle=on_events,
        dead_letters=None,
        max_records=settings.max_records,
        accepts=lambda m: type(m).__name__ in TRANSFER_EVENT_TYPES,
    )
    return router
