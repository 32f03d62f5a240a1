"""The accounts service's subscriber: a batch of account commands, decided in one unit of work."""

from __future__ import annotations

from bank_accounts.account import AccountState, decide
from bank_shared.contracts.accounts import AccountCommand
from bank_shared.contracts.outcomes import CommandOutcome
from bank_shared.eventstore.unit_of_work import EventStore
from bank_shared.messaging.consume import Batch


async def on_account_commands(
    accounts: EventStore[AccountState], commands: Batch[AccountCommand]
) -> list[CommandOutcome]:
    """Decide each command against its account as the batch has left it; write them all at
    once. A command seen before gets its first answer again and changes nothing. Returns the
    answers."""
    async for uow in accounts.attempts(commands):
        await uow.load({command.account_id for _, command in commands})
        for envelope, command in commands:
            if uow.replayed(envelope):
                continue
            account = uow.stream(command.account_id)
            decision = decide(command, account.state, envelope.sender)
            uow.record(envelope, command.account_id, decision)
        await uow.commit()
    return uow.outcomes
