"""Thin Kafka subscribers: StartTransfer commands, and the answers to the saga's own steps."""

from __future__ import annotations

from faststream.kafka import KafkaRouter

from bank_shared.contracts.envelope import Envelope, Message
from bank_shared.contracts.outcomes import CommandOutcome
from bank_shared.contracts.transfers import StartTransfer
from bank_shared.messaging.consume import DeadLetters, subscribe_batches
from bank_transfers_saga.saga import TransferSaga
from bank_transfers_saga.settings import SagaSettings


def build_router(
    settings: SagaSettings,
    saga: TransferSaga,
    command_letters: DeadLetters,
    answer_letters: DeadLetters,
    *,
    max_records: int = 100,
) -> KafkaRouter:
    router = KafkaRouter()

    async def on_transfer_commands(batch: list[tuple[Envelope, Message]]) -> None:
        await saga.start_batch([(e, c) for e, c in batch if isinstance(c, StartTransfer)])

    async def on_step_outcomes(batch: list[tuple[Envelope, Message]]) -> None:
        await saga.answers_batch([(e, o) for e, o in batch if isinstance(o, CommandOutcome)])

    subscribe_batches(
        router,
        settings.topics.transfer_commands,
        group_id=settings.commands_group,
        handle=on_transfer_commands,
        dead_letters=command_letters,
        accepts=lambda m: isinstance(m, StartTransfer),
        max_records=max_records,
    )
    subscribe_batches(
        router,
        settings.topics.step_outcomes,
        group_id=settings.answers_group,
        handle=on_step_outcomes,
        dead_letters=answer_letters,
        accepts=lambda m: isinstance(m, CommandOutcome),
        max_records=max_records,
    )
    return router
