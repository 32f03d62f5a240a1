"""Sending a command: record it and its outbox row atomically, then wait (bounded) for it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID, uuid4

import asyncpg

from bank_command_api.group_commit import GroupCommit
from bank_command_api.idempotency import IdempotencyKey, IdempotencyKeyInUseError, claim_keys
from bank_command_api.ledger import CommandRecord, insert_commands, load_command, opened_for
from bank_command_api.waiting import DecisionListener
from bank_shared.clock import Clock, utc_now
from bank_shared.contracts.actors import Actor
from bank_shared.contracts.envelope import Message, seal
from bank_shared.eventstore.store import (
    Changes,
    CommitListener,
    HasPool,
    OutboxMessage,
    write,
)

log = logging.getLogger(__name__)

# At most one warning this often while POSTs are answered without waiting.
OVERLOAD_LOG_INTERVAL = 10.0
# How long a write of keyed requests waits for a key another transaction holds.
KEY_LOCK_TIMEOUT_MS = 2000


@dataclass(frozen=True)
class NewCommand:
    """A command's row and its outbox row, written together."""

    record: CommandRecord
    outbox: OutboxMessage


@dataclass(frozen=True)
class Outgoing:
    """A command, who sends it, and where it goes: its topic, and the stream it addresses
    (the Kafka key)."""

    command: Message
    actor: Actor
    topic: str
    stream_id: str
    # For an OpenAccount: the login it opens the account for.
    owned_by: str | None = None


class Dispatcher:
    def __init__(
        self,
        database: HasPool,
        listener: DecisionListener,
        *,
        decision_timeout: float,
        max_waiting: int,
        relay: CommitListener | None = None,
        clock: Clock = utc_now,
    ) -> None:
        """`relay`: this process's outbox relay, handed each write's rows once committed."""
        self.database = database
        self.relay = relay
        self.listener = listener
        self.decision_timeout = decision_timeout
        self.max_waiting = max_waiting
        self.clock = clock
        self._warned_at = -OVERLOAD_LOG_INTERVAL
        # The commands of concurrent requests are written together. Those with an
        # Idempotency-Key go in batches of their own: claiming a key can wait for another
        # instance's claim of it to commit, and requests without one should not wait too.
        # A value the database refuses is one command's fault: the others are written. So is
        # a key another transaction holds too long (KEY_LOCK_TIMEOUT_MS).
        self._new_commands: GroupCommit[NewCommand, CommandRecord] = GroupCommit(
            self._write_commands, item_errors=(asyncpg.DataError,)
        )
        self._keyed_commands: GroupCommit[
            tuple[NewCommand, IdempotencyKey], CommandRecord | UUID
        ] = GroupCommit(
            self._write_keyed_commands,
            item_errors=(asyncpg.DataError, asyncpg.LockNotAvailableError),
        )

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
            recorded = await self._record(command_id, outgoing, idempotency)
            if isinstance(recorded, CommandRecord):
                return await self._await(recorded, decision) if wait else recorded
        # A repeated key: the command it stands for, read once we listen for its decision.
        with self.listener.expect(recorded) as decision:
            record = await self.find(recorded)
            if record is None:  # the key's foreign key makes this impossible
                raise RuntimeError(f"idempotency key without its command {recorded}")
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
        async with self.database.pool.acquire() as conn:
            return await load_command(conn, command_id)

    async def opened_for(self, account_id: str, subject: str) -> bool:
        async with self.database.pool.acquire() as conn:
            return await opened_for(conn, account_id, subject)

    async def _record(
        self, command_id: UUID, outgoing: Outgoing, idempotency: IdempotencyKey | None
    ) -> CommandRecord | UUID:
        """The new command's record, or the id of the command a repeated key stands for."""
        record = CommandRecord(
            command_id=command_id,
            command_type=outgoing.command.message_type(),
            stream_id=outgoing.stream_id,
            subject=outgoing.actor.subject,
            owned_by=outgoing.owned_by,
        )
        envelope = seal(
            outgoing.command,
            message_id=command_id,
            correlation_id=uuid4(),
            causation_id=None,
            occurred_at=self.clock(),
            actor=outgoing.actor,
        )
        new = NewCommand(record, OutboxMessage(outgoing.topic, outgoing.stream_id, envelope))
        if idempotency is None:
            return await self._new_commands.add(new)
        try:
            return await self._keyed_commands.add((new, idempotency))
        except asyncpg.LockNotAvailableError:
            raise IdempotencyKeyInUseError(idempotency.key) from None

    async def _write_commands(self, commands: Sequence[NewCommand]) -> list[CommandRecord]:
        async with self.database.pool.acquire() as conn:
            await write(conn, _changes(commands), self.relay)
        return [command.record for command in commands]

    async def _write_keyed_commands(
        self, keyed: Sequence[tuple[NewCommand, IdempotencyKey]]
    ) -> list[CommandRecord | UUID | Exception]:
        """One transaction: each key exists with its command and outbox row, or none of the
        three. A request whose key was used before is answered with the id of the command the
        key stands for."""
        commands = [command for command, _ in keyed]
        async with self.database.pool.acquire() as conn, conn.transaction():
            # A key another instance has claimed but not committed holds the whole batch until
            # it does, normally milliseconds. Past the timeout the batch is written again one
            # request at a time, and the request whose key is still held is refused (409,
            # send it again) instead of holding up this instance's keyed requests.
            await conn.execute(f"SET LOCAL lock_timeout = '{KEY_LOCK_TIMEOUT_MS}ms'")
            answers = await claim_keys(conn, [(k, c.record.command_id) for c, k in keyed])
            new = [c for c, answer in zip(commands, answers, strict=True) if answer is None]
            if new:
                await write(conn, _changes(new))
        return [
            command.record if answer is None else answer
            for command, answer in zip(commands, answers, strict=True)
        ]

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


def _changes(commands: Sequence[NewCommand]) -> Changes:
    """One statement: a command's row and its outbox row exist together or not at all, so a
    crash never leaves a command recorded but unsent, or sent but unknown here."""
    return Changes(
        outbox=[c.outbox for c in commands], writes=[insert_commands([c.record for c in commands])]
    )
