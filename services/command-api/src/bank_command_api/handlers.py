"""The command API's subscriber: record the decisions the write side made on its commands."""

from __future__ import annotations

from bank_command_api.ledger import record_decisions
from bank_shared.contracts.outcomes import CommandOutcome
from bank_shared.eventstore.store import HasPool
from bank_shared.messaging.consume import Batch


async def on_command_outcomes(database: HasPool, outcomes: Batch[CommandOutcome]) -> None:
    # One statement per batch: the decisions and their notifications commit together.
    async with database.pool.acquire() as conn:
        await record_decisions(conn, [outcome for _, outcome in outcomes])
