"""The steps the saga sends (its account commands), kept in `saga_steps`: which transfer and step
an answer belongs to, and which steps got no answer in time, to be sent again.

A step is written in the same statement as the transfer event that calls for it, so a crash
either leaves both or neither. A step sent again keeps its command id (saga.step_command_id):
the accounts service applies it at most once."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from uuid import UUID

import asyncpg

from bank_shared.contracts.envelope import Envelope, read_payload, seal
from bank_shared.contracts.transfers import TRANSFER_EVENTS, TransferEvent
from bank_shared.db import Connection
from bank_shared.eventstore.known import KnownStates
from bank_shared.eventstore.store import Changes, HasPool, OutboxMessage, write
from bank_shared.eventstore.unit_of_work import UnitOfWork
from bank_shared.messaging.dead_letters import DeadLetters
from bank_shared.topics import TopicSettings
from bank_transfers_saga.saga import Step, next_steps, step_command_id
from bank_transfers_saga.transfer import TransferState

log = logging.getLogger(__name__)

ISSUE = (
    "INSERT INTO saga_steps (command_id, transfer_id, step, topic, key, command, next_attempt_at)"
    " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],"
    " $6::bytea[], $7::timestamptz[])"
)
# By primary key, the first answer's time kept: a condition on `answered_at IS NULL` would let
# the planner read the partial index of unanswered steps, with an entry for every step answered
# since the last vacuum (docs/performance.md).
MARK_ANSWERED = (
    "UPDATE saga_steps s SET answered_at = coalesce(s.answered_at, a.at)"
    " FROM unnest($1::uuid[], $2::timestamptz[]) AS a(command_id, at)"
    " WHERE s.command_id = a.command_id"
)
DUE = (
    "SELECT command_id, transfer_id, step, topic, key, command, attempts FROM saga_steps"
    " WHERE answered_at IS NULL AND dead_lettered_at IS NULL AND next_attempt_at <= now()"
    " ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED"
)


@dataclass(frozen=True)
class SentStep:
    transfer_id: str
    step: Step


class Steps:
    def __init__(
        self,
        database: HasPool,
        topics: TopicSettings,
        *,
        timeout: float = 10.0,
        max_backoff: float = 300.0,
        known: int = 10_000,
        dead_letters: DeadLetters | None = None,
    ) -> None:
        """A step with no answer after `timeout` seconds is sent again, then after twice as
        long, up to `max_backoff`. `known`: how many transfers' steps to remember."""
        self.database = database
        self.topics = topics
        self.timeout = timeout
        self.max_backoff = max_backoff
        self.dead_letters = dead_letters
        # Which transfer and step each command is: a fact that never changes once written.
        self.known: KnownStates[UUID, SentStep] = KnownStates(2 * known)

    def send(
        self, uow: UnitOfWork[TransferState], transfer: TransferState, events: list[Envelope]
    ) -> None:
        """Send the account commands the transfer's new events call for, as its next steps."""
        due = uow.now + timedelta(seconds=self.timeout)
        sent: dict[UUID, SentStep] = {}
        for event in events:
            for step, command in next_steps(transfer, _transfer_event(event)):
                command_id = step_command_id(transfer.transfer_id, step)
                message = OutboxMessage(
                    self.topics.account_commands,
                    command.account_id,
                    seal(
                        command,
                        message_id=command_id,
                        correlation_id=event.correlation_id,
                        causation_id=event.message_id,
                        occurred_at=uow.now,
                        reply_to=self.topics.step_outcomes,
                        # Every step in the name of who asked for the transfer: the debit
                        # is refused unless they may act on the source.
                        actor=transfer.requested_by,
                    ),
                )
                uow.send(message)
                uow.write_row(
                    ISSUE,
                    command_id,
                    transfer.transfer_id,
                    step,
                    message.topic,
                    message.key,
                    message.value,
                    due,
                )
                sent[command_id] = SentStep(transfer.transfer_id, step)
        if sent:
            uow.after_commit(partial(self.known.remember, sent))

    def answered(self, uow: UnitOfWork[TransferState], command_id: UUID) -> None:
        uow.write_row(MARK_ANSWERED, command_id, uow.now)

    async def find(
        self, uow: UnitOfWork[TransferState], command_ids: set[UUID]
    ) -> dict[UUID, SentStep]:
        """The steps among `command_ids` (answers to anything else are not the saga's). From
        known states, only those remembered: the others make the batch read."""
        found = self.known.any_of(command_ids)
        missing = command_ids - found.keys()
        if uow.from_memory or not missing:
            return found
        read = await self.read(missing)
        self.known.remember(read)
        return found | read

    async def read(self, command_ids: set[UUID]) -> dict[UUID, SentStep]:
        async with self.database.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT command_id, transfer_id, step FROM saga_steps"
                " WHERE command_id = ANY($1::uuid[])",
                list(command_ids),
            )
        return {r["command_id"]: SentStep(r["transfer_id"], r["step"]) for r in rows}

    # --- steps with no answer in time ------------------------------------------------------

    async def resend_forever(self, interval: float = 1.0) -> None:
        """Send overdue steps again every `interval` seconds until cancelled. A failure is
        logged and the next round tries again: this loop is what rescues lost steps."""
        while True:
            try:
                await self.resend_due()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("checking overdue saga steps failed: %s", error)
            except Exception:
                log.exception("checking overdue saga steps failed unexpectedly; will try again")
            await asyncio.sleep(interval)

    async def resend_due(self, limit: int = 200) -> int:
        """Send every overdue step again, with the same command id, asking for its answer on
        the step outcomes topic; a step whose command cannot be read any more is dead-lettered
        instead, once. Returns how many were sent again."""
        async with self.database.pool.acquire() as conn, conn.transaction():
            again: list[tuple[asyncpg.Record, OutboxMessage]] = []
            for row in await conn.fetch(DUE, limit):
                try:
                    again.append((row, self._again(row)))
                except Exception as error:  # whatever it is, this step cannot go again
                    await self._dead_letter(conn, row, error)
            if not again:
                return 0
            await write(conn, Changes(outbox=[message for _, message in again]))
            await conn.executemany(
                "UPDATE saga_steps SET attempts = attempts + 1, next_attempt_at = now()"
                " + make_interval(secs => $2) WHERE command_id = $1",
                [(row["command_id"], self._backoff(row["attempts"])) for row, _ in again],
            )
        for row, _ in again:
            log.warning(
                "transfer %s: no answer to %s after %d attempt(s); sent again",
                row["transfer_id"],
                row["step"],
                row["attempts"],
            )
        return len(again)

    def _again(self, row: asyncpg.Record) -> OutboxMessage:
        envelope = Envelope.model_validate_json(row["command"]).model_copy(
            update={"reply_to": self.topics.step_outcomes}
        )
        return OutboxMessage(row["topic"], row["key"], envelope)

    async def _dead_letter(self, conn: Connection, row: asyncpg.Record, error: Exception) -> None:
        """Dead-letter a step that cannot be sent, then mark it so: if the mark is lost, the
        step is dead-lettered again, never lost."""
        reason = f"the saga cannot send step {row['step']} again: {error!r}"
        if self.dead_letters is None:
            log.error("transfer %s: %s (no dead-letter topic)", row["transfer_id"], reason)
        else:
            source = {"transfer-id": row["transfer_id"], "step": row["step"]}
            await self.dead_letters.publish(row["key"].encode(), row["command"], reason, source)
        await conn.execute(
            "UPDATE saga_steps SET dead_lettered_at = now() WHERE command_id = $1",
            row["command_id"],
        )

    def _backoff(self, attempts: int) -> float:
        return float(min(self.max_backoff, self.timeout * 2**attempts))


def _transfer_event(envelope: Envelope) -> TransferEvent:
    event = read_payload(envelope)
    if not isinstance(event, TRANSFER_EVENTS):
        raise TypeError(f"{envelope.type} is not a transfer event")
    return event
