"""The projector's subscribers: each batch of account or transfer events, applied to the read
model; an event that cannot be applied parks its stream."""

from __future__ import annotations

from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from bank_projector.projections import park, project
from bank_shared.contracts.envelope import Envelope, Message
from bank_shared.eventstore.store import HasPool
from bank_shared.messaging.consume import Batch
from bank_shared.messaging.dead_letters import DeadLetters, Record


async def on_events(database: HasPool, events: Batch[Message]) -> None:
    # No transaction: each write of `project` is one statement (see there).
    async with database.pool.acquire() as conn:
        await project(conn, events)


class ParkingDeadLetters(DeadLetters):
    """The projector's dead letters: the event goes to the dead-letter topic and its stream is
    parked (projections.park), so its later events are not gaps that stop the partition."""

    def __init__(self, broker: KafkaBroker, topic: str, database: HasPool) -> None:
        super().__init__(broker, topic)
        self.database = database

    async def send(self, record: Record, reason: str) -> None:
        await super().send(record, reason)
        try:
            envelope: Envelope | None = Envelope.model_validate_json(record.value or b"")
        except ValidationError:
            envelope = None
        async with self.database.pool.acquire() as conn:
            await park(conn, envelope, reason)
