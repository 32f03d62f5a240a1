"""Thin Kafka subscribers: StartTransfer commands, and the answers to the saga's own steps."""

from __future__ import annotations

from faststream import AckPolicy
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaMessage

from bank_shared.contracts.envelope import Envelope, Message
from bank_shared.contracts.outcomes import CommandOutcome
from bank_shared.contracts.transfers import StartTransfer
from bank_shared.messaging.consume import DeadLetters, consume_batch, tolerant_batch_parser
from bank_transfers_saga.saga import TransferSaga
from bank_transfers_saga.settings import SagaSettings


def build_router(
    settings: SagaSettings, saga: TransferSaga, dead_letters: DeadLetters, *, max_records: int = 100
) -> KafkaRouter:
    router = KafkaRouter()
    topics = settings.topics

    async def start(batch: list[tuple[Envelope, Message]]) -> None:
        await saga.start_batch([(e, c) for e, c in batch if isinstance(c, StartTransfer)])

    async def answer(batch: list[tuple[Envelope, Message]]) -> None:
        await saga.answers_batch([(e, o) for e, o in batch if isinstance(o, CommandOutcome)])

    # Offsets are committed by consume_batch after the batch's transaction (MANUAL policy).
    @router.subscriber(
        topics.transfer_commands,
        group_id=settings.commands_group,
        batch=True,
        max_records=max_records,
        ack_policy=AckPolicy.MANUAL,
        parser=tolerant_batch_parser,
        # The relay publishes in Kafka transactions: never read what it aborted.
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )
    async def on_transfer_commands(message: KafkaMessage) -> None:
        await consume_batch(
            message, start, dead_letters, accepts=lambda m: isinstance(m, StartTransfer)
        )

    @router.subscriber(
        topics.command_outcomes,
        group_id=settings.answers_group,
        batch=True,
        max_records=max_records,
        ack_policy=AckPolicy.MANUAL,
        parser=tolerant_batch_parser,
        # The relay publishes in Kafka transactions: never read what it aborted.
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )
    async def on_command_outcomes(message: KafkaMessage) -> None:
        await consume_batch(
            message, answer, dead_letters, accepts=lambda m: isinstance(m, CommandOutcome)
        )

    return router
