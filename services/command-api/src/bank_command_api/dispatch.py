"""Sending a command: record it and its outbox row atomically, then wait (bounded) for it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from bank_command_api.group_commit import GroupCommit
from bank_command_api.idempotency import IdempotencyKey, claim
from bank_command_api.ledger import CommandRecord, insert_commands, load_command
from bank_command_api.waiting import DecisionListener
from bank_shared.clock import Clock, utc_now
from bank_shared.contracts.envelope import Message, seal
from bank_shared.eventstore.store import OutboxMessage, WriteStatement

log = logging.getLogger(__name__)

# At most one warning this often while POSTs are answered without waiting.
OVERLOAD_LOG_INTERVAL = 10.0


@dataclass(frozen=True)
class Outgoing:
    """A command and where it goes: its topic, and the stream it addresses (the Kafka key)."""

    command: Message
    topic: str
    stream_id: str


class Dispatcher:
    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        listener: DecisionListener,
        *,
        decision_timeout: float,
        max_waiting: int,
        clock: Clock = utc_now,
    ) -> None:
        self.pool = pool
        self.listener = listener
        self.decision_timeout = decision_timeout
        self.max_waiting = max_waiting
        self.clock = clock
        self._warned_at = -OVERLOAD_LOG_INTERVAL
        # A value the database refuses is one command's fault: the others are written.
        self._new_commands = GroupCommit(self._write_commands, item_errors=(asyncpg.DataError,))

    async def send(
        self, outgoing: Outgoing, *, idempotency: IdempotencyKey | None, wait: bool
    ) -> CommandRecord:
        """The command's record: decided if the decision came within the timeout (and `wait`),
        else pending. A repeated Idempotency-Key gets the first request's command instead,
        waited for the same way; nothing is sent again. With `max_waiting` requests waiting
        already, none more waits: its record is pending."""
        if wait and self.listener.waiting >= self.max_waiting:
            wait = False
            self._warn_overloaded()
        command_id = uuid4()
        with self.listener.expect(command_id) as decision:
            record = await self._record(command_id, outgoing, idempotency)
            if record.command_id == command_id:
                return await self._await(record, decision) if wait else record
        with self.listener.expect(record.command_id) as decision:
            # Read again now that we listen: it may have been decided since the claim.
            record = await self.find(record.command_id) or record
            return await self._await(record, decision) if wait else record

    def _warn_overloaded(self) -> None:
        now = time.monotonic()
        if now - self._warned_at >= OVERLOAD_LOG_INTERVAL:
            self._warned_at = now
            log.warning(
                "%d requests wait for decisions (BANK_COMMAND_API_MAX_WAITING): answering 202"
                " pending at once until fewer wait. The write side is behind: check the"
                " accounts service and the saga (make status, their logs)",
                self.listener.waiting,
            )

    async def find(self, command_id: UUID) -> CommandRecord | None:
        async with self.pool.acquire() as conn:
            return await load_command(conn, command_id)

    async def _record(
        self, command_id: UUID, outgoing: Outgoing, idempotency: IdempotencyKey | None
    ) -> CommandRecord:
        record = CommandRecord(
            command_id=command_id,
            command_type=outgoing.command.message_type(),
            stream_id=outgoing.stream_id,
        )
        envelope = seal(
            outgoing.command,
            message_id=command_id,
            correlation_id=uuid4(),
            causation_id=None,
            occurred_at=self.clock(),
        )
        sent = OutboxMessage(outgoing.topic, outgoing.stream_id, envelope)
        if idempotency is None:
            # Written with the commands of concurrent requests, in one statement.
            await self._new_commands.add((record, sent))
            return record
        # With a key, one transaction: the key exists with them, or none of the three.
        async with self.pool.acquire() as conn, conn.transaction():
            earlier = await claim(conn, idempotency, command_id)
            if earlier is not None:
                found = await load_command(conn, earlier)
                if found is None:  # the foreign key makes this impossible
                    raise RuntimeError(f"idempotency key without its command {earlier}")
                return found
            await _statement([(record, sent)]).execute(conn)
        return record

    async def _write_commands(
        self, commands: Sequence[tuple[CommandRecord, OutboxMessage]]
    ) -> None:
        async with self.pool.acquire() as conn:
            await _statement(commands).execute(conn)

    async def _await(
        self, record: CommandRecord, decision: asyncio.Future[CommandRecord]
    ) -> CommandRecord:
        if record.decided:
            return record
        try:
            return await asyncio.wait_for(decision, self.decision_timeout)
        except TimeoutError:
            # The notification may have been lost while the listener reconnected.
            return await self.find(record.command_id) or record


def _statement(commands: Sequence[tuple[CommandRecord, OutboxMessage]]) -> WriteStatement:
    """One statement: a command's row and its outbox row exist together or not at all, so a
    crash never leaves a command recorded but unsent, or sent but unknown here."""
    statement = WriteStatement()
    insert_commands(statement, [record for record, _ in commands])
    statement.include_changes([], [sent for _, sent in commands], [])
    return statement
