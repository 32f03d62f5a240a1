"""The transfers saga's subscribers: StartTransfer commands, and the answers to its steps."""

from __future__ import annotations

from bank_shared.contracts.outcomes import CommandOutcome
from bank_shared.contracts.transfers import StartTransfer
from bank_shared.eventstore.unit_of_work import EventStore
from bank_shared.faults import crash_point
from bank_shared.messaging.consume import Batch
from bank_transfers_saga.saga import on_step_answer
from bank_transfers_saga.steps import Steps
from bank_transfers_saga.transfer import TransferState, decide


async def on_transfer_commands(
    transfers: EventStore[TransferState], steps: Steps, commands: Batch[StartTransfer]
) -> list[CommandOutcome]:
    """Start each transfer and send its first step, all in one write; return the answers."""
    async for uow in transfers.attempts(commands):
        await uow.load({command.transfer_id for _, command in commands})
        for envelope, command in commands:
            if uow.replayed(envelope):
                continue
            transfer = uow.stream(command.transfer_id)
            decision = decide(command, transfer.state, envelope.sender)
            started = uow.record(envelope, command.transfer_id, decision)
            steps.send(uow, uow.stream(command.transfer_id).state, started)
        await uow.commit()
    return uow.outcomes


async def on_step_outcomes(
    transfers: EventStore[TransferState], steps: Steps, answers: Batch[CommandOutcome]
) -> None:
    """Move each transfer on by the answer to its step, and send the next step."""
    async for uow in transfers.attempts(answers):
        ours = await steps.find(uow, {outcome.command_id for _, outcome in answers})
        await uow.load({step.transfer_id for step in ours.values()})
        for envelope, outcome in answers:
            step = ours.get(outcome.command_id)
            if step is None or uow.replayed(envelope):
                continue
            transfer = uow.stream(step.transfer_id)
            events = on_step_answer(transfer.state, step.step, outcome.accepted, outcome.code)
            moved = uow.react(envelope, step.transfer_id, events)
            steps.send(uow, uow.stream(step.transfer_id).state, moved)
            steps.answered(uow, outcome.command_id)
            if moved and step.step == "withdraw" and outcome.accepted:
                crash_point("transfers-saga.after-debit-before-commit")  # for the crash test
        await uow.commit()
