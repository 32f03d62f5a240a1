"""Thin Kafka subscriber: hand each batch of account commands to the command handler."""

from __future__ import annotations

from faststream.kafka import KafkaRouter

from bank_accounts.account import AccountCommandHandler
from bank_shared.contracts.accounts import ACCOUNT_COMMANDS
from bank_shared.contracts.envelope import Envelope, Message
from bank_shared.messaging.consume import DeadLetters, subscribe_batches
from bank_shared.topics import TopicSettings


def build_router(
    topics: TopicSettings,
    handler: AccountCommandHandler,
    dead_letters: DeadLetters,
    *,
    group_id: str,
    max_records: int = 100,
) -> KafkaRouter:
    router = KafkaRouter()

    async def on_account_commands(batch: list[tuple[Envelope, Message]]) -> None:
        commands = [(e, c) for e, c in batch if isinstance(c, ACCOUNT_COMMANDS)]
        assert len(commands) == len(batch)  # guaranteed by `accepts` below
        await handler.handle_batch(commands)

    subscribe_batches(
        router,
        topics.account_commands,
        group_id=group_id,
        handle=on_account_commands,
        dead_letters=dead_letters,
        accepts=lambda m: isinstance(m, ACCOUNT_COMMANDS),
        max_records=max_records,
    )
    return router
