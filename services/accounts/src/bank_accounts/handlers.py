"""Thin Kafka subscribers: hand each account command to the command handler."""

from __future__ import annotations

from faststream import AckPolicy
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaMessage

from bank_accounts.account import AccountCommandHandler
from bank_shared.contracts.accounts import ACCOUNT_COMMANDS
from bank_shared.contracts.envelope import Envelope, Message
from bank_shared.messaging.consume import DeadLetters, consume_batch, tolerant_batch_parser
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

    async def apply(batch: list[tuple[Envelope, Message]]) -> None:
        commands = [(e, c) for e, c in batch if isinstance(c, ACCOUNT_COMMANDS)]
        assert len(commands) == len(batch)  # guaranteed by `accepts` below
        await handler.handle_batch(commands)

    # Offsets are committed by consume_batch after the batch's transactions (MANUAL policy):
    # FastStream's automatic acknowledgement would commit before the effects are durable.
    @router.subscriber(
        topics.account_commands,
        group_id=group_id,
        batch=True,
        max_records=max_records,
        ack_policy=AckPolicy.MANUAL,
        parser=tolerant_batch_parser,
        # The relay publishes in Kafka transactions: never read what it aborted.
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )
    async def on_account_commands(message: KafkaMessage) -> None:
        await consume_batch(
            message, apply, dead_letters, accepts=lambda m: isinstance(m, ACCOUNT_COMMANDS)
        )

    return router
