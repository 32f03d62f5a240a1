"""Handling one account command atomically: load, decide, append events + outbox + outcome."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg

from bank_shared.contracts.accounts import (
    ACCOUNT_EVENTS,
    AccountCommand,
    AccountEvent,
    CommandOutcome,
)
from bank_shared.contracts.envelope import Envelope, read_payload, seal
from bank_shared.db import Connection
from bank_shared.domain.account import Rejection, decide, fold
from bank_shared.eventstore.store import (
    ConcurrencyError,
    OutboxMessage,
    add_to_outbox,
    append_events,
    find_processed,
    load_stream,
    remember_processed,
)
from bank_shared.ids import derived_id
from bank_shared.topics import TopicSettings

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class AccountCommandHandler:
    """The application service around the BankAccount decider."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        topics: TopicSettings,
        *,
        max_conflict_retries: int = 10,
        clock: Clock = utc_now,
    ) -> None:
        self.pool = pool
        self.topics = topics
        self.max_conflict_retries = max_conflict_retries
        self.clock = clock

    async def handle(self, envelope: Envelope, command: AccountCommand) -> CommandOutcome:
        """Apply `command` exactly once; a redelivered command gets its first outcome again."""
        async with self.pool.acquire() as conn:
            for attempt in range(1, self.max_conflict_retries + 1):
                try:
                    async with conn.transaction():
                        return await self._handle_in_transaction(conn, envelope, command)
                except ConcurrencyError as conflict:
                    log.info("retrying %s (attempt %d): %s", envelope.type, attempt, conflict)
        raise ConcurrencyError(
            f"{envelope.type} {envelope.message_id} still conflicted after "
            f"{self.max_conflict_retries} attempts"
        )

    async def _handle_in_transaction(
        self, conn: Connection, envelope: Envelope, command: AccountCommand
    ) -> CommandOutcome:
        command_id = envelope.message_id
        processed = await find_processed(conn, command_id)
        if processed is not None and processed.answer is not None:
            # Publish the very same outcome again: the sender may have missed the first one.
            await add_to_outbox(conn, [processed.answer])
            return CommandOutcome.model_validate(processed.answer.envelope.payload)

        stream_id = command.account_id
        history = await load_stream(conn, stream_id)
        state = fold(account_event(r.envelope) for r in history)
        version = len(history)
        now = self.clock()
        decision = decide(command, state)

        if isinstance(decision, Rejection):
            outcome = CommandOutcome(
                command_id=command_id,
                command_type=envelope.type,
                stream_id=stream_id,
                status="rejected",
                code=decision.code,
                reason=decision.reason,
                version=version,
            )
            new_events: list[Envelope] = []
        else:
            new_events = [
                seal(
                    event,
                    message_id=derived_id(command_id, "event", i),
                    correlation_id=envelope.correlation_id,
                    causation_id=command_id,
                    occurred_at=now,
                    stream_id=stream_id,
                    stream_version=version + i,
                )
                for i, event in enumerate(decision, start=1)
            ]
            version = await append_events(conn, stream_id, version, new_events)
            outcome = CommandOutcome(
                command_id=command_id,
                command_type=envelope.type,
                stream_id=stream_id,
                status="accepted",
                version=version,
                balance=decision[-1].balance_after,
            )

        answer = OutboxMessage(
            self.topics.command_outcomes,
            stream_id,
            seal(
                outcome,
                message_id=derived_id(command_id, "outcome"),
                correlation_id=envelope.correlation_id,
                causation_id=command_id,
                occurred_at=now,
            ),
        )
        await add_to_outbox(
            conn,
            [OutboxMessage(self.topics.account_events, stream_id, e) for e in new_events]
            + [answer],
        )
        await remember_processed(conn, command_id, answer)
        return outcome


def account_event(envelope: Envelope) -> AccountEvent:
    event = read_payload(envelope)
    if not isinstance(event, ACCOUNT_EVENTS):
        raise TypeError(f"{envelope.type} is not an account event (stream {envelope.stream_id})")
    return event
