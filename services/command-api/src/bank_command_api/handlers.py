"""Thin Kafka subscriber: record the outcomes of the commands this API sent."""

from __future__ import annotations

from typing import Any

import asyncpg
from faststream.kafka import KafkaRouter

from bank_command_api.ledger import record_decisions
from bank_shared.contracts.envelope import Envelope, Message
from bank_shared.contracts.outcomes import CommandOutcome
from bank_shared.messaging.consume import DeadLetters, subscribe_batches
from bank_shared.topics import TopicSettings


def build_router(
    topics: TopicSettings,
    pool: asyncpg.Pool[Any],
    dead_letters: DeadLetters,
    *,
    group_id: str,
    max_records: int = 500,
) -> KafkaRouter:
    router = KafkaRouter()

    async def apply(batch: list[tuple[Envelope, Message]]) -> None:
        outcomes = [o for _, o in batch if isinstance(o, CommandOutcome)]
        # One statement per batch: the decisions and their notifications commit together.
        async with pool.acquire() as conn:
            await record_decisions(conn, outcomes)

    subscribe_batches(
        router,
        topics.command_outcomes,
        group_id=group_id,
        handle=apply,
        dead_letters=dead_letters,
        accepts=lambda m: isinstance(m, CommandOutcome),
        max_records=max_records,
    )
    return router
