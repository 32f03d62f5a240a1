"""The transfers saga's application service: start transfers, react to the answers of the
account commands it issued, and re-send steps that got no answer in time.

Every reaction writes in one statement, so one transaction: the transfer's new events, the
next account command (in the outbox), the step record, and the processed-message record commit
together, so a crash at any point either leaves no trace or leaves the whole step done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import asyncpg

from bank_shared.clock import Clock, utc_now
from bank_shared.contracts.envelope import Envelope, read_payload, seal, seal_events
from bank_shared.contracts.outcomes import CommandOutcome
from bank_shared.contracts.transfers import TRANSFER_EVENTS, StartTransfer, TransferEvent
from bank_shared.db import Connection
from bank_shared.domain.account import Rejection
from bank_shared.domain.transfer import (
    INITIAL,
    Step,
    TransferState,
    commands_after,
    decide_start,
    evolve,
    fold,
    on_step_answer,
)
from bank_shared.eventstore.known import KnownStates, written_if_current
from bank_shared.eventstore.store import (
    CommitListener,
    OutboxMessage,
    RecordedEvent,
    WriteStatement,
    add_to_outbox,
    decide_and_write,
    find_processed,
    load_streams,
)
from bank_shared.faults import crash_point
from bank_shared.ids import derived_id
from bank_shared.messaging.consume import DeadLetters
from bank_shared.topics import TopicSettings

log = logging.getLogger(__name__)

T = TypeVar("T")


def step_command_id(transfer_id: str, step: Step) -> UUID:
    """Derived, not random: a re-sent or re-decided step is the same command downstream,
    so the accounts service applies it at most once."""
    return derived_id("transfer", transfer_id, step)


@dataclass
class Transfer:
    """One transfer as the batch moves on: its state, version and correlation id."""

    state: TransferState = INITIAL
    version: int = 0
    correlation_id: UUID | None = None


@dataclass
class Changes:
    """Everything one batch writes, flushed in one statement at the end, and when it was
    decided (its events' time; its steps' deadlines count from it)."""

    now: datetime
    events: list[Envelope] = field(default_factory=list)
    outbox: list[OutboxMessage] = field(default_factory=list)
    steps: list[tuple[UUID, str, Step, OutboxMessage]] = field(default_factory=list)
    answered: list[UUID] = field(default_factory=list)
    processed: list[tuple[UUID, OutboxMessage | None]] = field(default_factory=list)


async def load_steps(conn: Connection, command_ids: Iterable[UUID]) -> dict[UUID, tuple[str, Step]]:
    """Which transfer and step each of these commands is, for those the saga issued."""
    rows = await conn.fetch(
        "SELECT command_id, transfer_id, step FROM saga_steps WHERE command_id = ANY($1::uuid[])",
        list(command_ids),
    )
    return {r["command_id"]: (r["transfer_id"], r["step"]) for r in rows}


def transfer_event(recorded: RecordedEvent) -> TransferEvent:
    event = read_payload(recorded.envelope)
    if not isinstance(event, TRANSFER_EVENTS):
        raise TypeError(f"{recorded.envelope.type} is not a transfer event")
    return event


# The saga's own writes, added to the store's in one statement (WriteStatement).
ISSUE_STEPS = (
    "INSERT INTO saga_steps (command_id, transfer_id, step, topic, key, command, next_attempt_at)"
    " SELECT *, $7::timestamptz"
    " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[])"
)
# Never a step inserted by the same statement: its command is sent only after the commit.
# Found by primary key alone, with the first answer's time kept by coalesce: a condition
# `answered_at IS NULL` would let the planner choose the partial index saga_steps_due, which
# holds an entry for every step answered since the last vacuum, and read them all (half of
# the saga's write, 0.8 ms of 1.7, at 270 transfers/s: docs/performance-journal.md, change 33).
MARK_ANSWERED = (
    "UPDATE saga_steps SET answered_at = coalesce(answered_at, $2::timestamptz)"
    " WHERE command_id = ANY($1::uuid[])"
)


class TransferSaga:
    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        topics: TopicSettings,
        *,
        step_timeout: float = 10.0,
        max_step_backoff: float = 300.0,
        max_conflict_retries: int = 10,
        clock: Clock = utc_now,
        relay: CommitListener | None = None,
        known_transfers: int = 10_000,
        dead_letters: DeadLetters | None = None,
    ) -> None:
        """`relay`: this process's outbox relay, handed each batch's rows once committed.
        `known_transfers`: how many transfers' last state it keeps, to decide without reading.
        `dead_letters`: where a step that cannot be sent again goes."""
        self.pool = pool
        self.topics = topics
        self.step_timeout = step_timeout
        self.max_step_backoff = max_step_backoff
        self.max_conflict_retries = max_conflict_retries
        self.clock = clock
        self.relay = relay
        self.dead_letters = dead_letters
        # Each transfer as this process last wrote or read it, and which transfer and step
        # each of its step commands is (a fact that never changes once written); see
        # eventstore/known.py for when a decision may rest on them.
        self.known: KnownStates[str, Transfer] = KnownStates(
            known_transfers, version=lambda transfer: transfer.version
        )
        self.known_steps: KnownStates[UUID, tuple[str, Step]] = KnownStates(2 * known_transfers)

    async def _decide_and_write(
        self, work: Callable[[Connection, bool], Awaitable[T]], what: str
    ) -> T:
        """`work(conn, from_memory)`: from known states on the first attempt only
        (decide_and_write); a conflict is decided again from a read."""
        return await decide_and_write(
            self.pool,
            work,
            attempts=self.max_conflict_retries,
            log=log,
            what=f"saga {what}",
        )

    async def _load(self, conn: Connection, transfer_ids: set[str]) -> dict[str, Transfer]:
        transfers: dict[str, Transfer] = {}
        for transfer_id, recorded in (await load_streams(conn, transfer_ids)).items():
            transfers[transfer_id] = Transfer(
                state=fold(transfer_event(r) for r in recorded),
                version=recorded[-1].version,
                correlation_id=recorded[0].envelope.correlation_id,
            )
        return transfers

    # --- StartTransfer ----------------------------------------------------------------------

    async def start_batch(
        self, commands: Sequence[tuple[Envelope, StartTransfer]]
    ) -> list[CommandOutcome]:
        return await self._decide_and_write(
            lambda conn, from_memory: self._start(conn, commands, from_memory),
            "StartTransfer batch",
        )

    async def _start(
        self,
        conn: Connection,
        commands: Sequence[tuple[Envelope, StartTransfer]],
        from_memory: bool,
    ) -> list[CommandOutcome]:
        ids = {c.transfer_id for _, c in commands}
        if from_memory and self.known.enabled:
            # A transfer not known here is taken as new: if it exists after all, the write's
            # UNIQUE (stream_id, version) refuses its TransferStarted.
            transfers = {i: replace(t) for i, t in self.known.any_of(ids).items()}
            changes, outcomes, all_appended = self._decide_starts(commands, transfers, {})
            if all_appended and await written_if_current(
                self._write(conn, changes, transfers), log, "StartTransfer batch"
            ):
                return outcomes
        earlier = await find_processed(conn, (e.message_id for e, _ in commands))
        answers = {i: p.answer for i, p in earlier.items() if p.answer is not None}
        transfers = await self._load(conn, ids)
        changes, outcomes, _ = self._decide_starts(commands, transfers, answers)
        await self._write(conn, changes, transfers)
        return outcomes

    def _decide_starts(
        self,
        commands: Sequence[tuple[Envelope, StartTransfer]],
        transfers: dict[str, Transfer],
        answers: dict[UUID, OutboxMessage],
    ) -> tuple[Changes, list[CommandOutcome], bool]:
        """The batch's changes and outcomes, and whether every command appended events.
        `transfers` and `answers` are the batch's own, updated as it moves on."""
        now = self.clock()
        changes = Changes(now)
        outcomes: list[CommandOutcome] = []
        all_appended = True

        for envelope, command in commands:
            reply_topic = self.topics.outcome_topic(envelope.reply_to)
            if envelope.message_id in answers:
                # The same answer again, to where this copy of the command asks for it.
                changes.outbox.append(replace(answers[envelope.message_id], topic=reply_topic))
                outcomes.append(
                    CommandOutcome.model_validate(answers[envelope.message_id].envelope.payload)
                )
                all_appended = False
                continue
            transfer = transfers.setdefault(command.transfer_id, Transfer())
            decision = decide_start(command, transfer.state)
            if isinstance(decision, Rejection):
                all_appended = False
                outcome = CommandOutcome(
                    command_id=envelope.message_id,
                    command_type=envelope.type,
                    stream_id=command.transfer_id,
                    status="rejected",
                    code=decision.code,
                    reason=decision.reason,
                    version=transfer.version,
                )
            else:
                transfer.correlation_id = envelope.correlation_id
                self._record(changes, transfer, decision, cause=envelope.message_id, now=now)
                outcome = CommandOutcome(
                    command_id=envelope.message_id,
                    command_type=envelope.type,
                    stream_id=command.transfer_id,
                    status="accepted",
                    version=transfer.version,
                )
            answer = OutboxMessage(
                reply_topic,
                command.transfer_id,
                seal(
                    outcome,
                    message_id=derived_id(envelope.message_id, "outcome"),
                    correlation_id=envelope.correlation_id,
                    causation_id=envelope.message_id,
                    occurred_at=now,
                ),
            )
            changes.outbox.append(answer)
            changes.processed.append((envelope.message_id, answer))
            answers[envelope.message_id] = answer
            outcomes.append(outcome)
        return changes, outcomes, all_appended

    # --- answers to the saga's own account commands ------------------------------------------

    async def answers_batch(self, answers: Sequence[tuple[Envelope, CommandOutcome]]) -> int:
        """React to command outcomes; those of commands the saga did not issue are ignored.
        Returns how many answers moved a transfer on."""
        return await self._decide_and_write(
            lambda conn, from_memory: self._answer(conn, answers, from_memory), "answers batch"
        )

    async def _answer(
        self,
        conn: Connection,
        answers: Sequence[tuple[Envelope, CommandOutcome]],
        from_memory: bool,
    ) -> int:
        steps = {outcome.command_id for _, outcome in answers}
        ours = self.known_steps.all_of(steps) if from_memory and self.known_steps.enabled else None
        if ours is not None:
            known = self.known.all_of({transfer_id for transfer_id, _ in ours.values()})
            if known is not None:
                transfers = {i: replace(t) for i, t in known.items()}
                changes, moved, all_appended = self._decide_answers(answers, ours, transfers, set())
                if all_appended and await written_if_current(
                    self._write(conn, changes, transfers), log, "answers batch"
                ):
                    return moved
        ours = await load_steps(conn, steps)
        self.known_steps.remember(ours)
        mine = [(e, o) for e, o in answers if o.command_id in ours]
        if not mine:
            return 0
        # An answer published twice (a redelivered or re-sent command) has one message id.
        seen = set(await find_processed(conn, (e.message_id for e, _ in mine)))
        transfers = await self._load(conn, {ours[o.command_id][0] for _, o in mine})
        changes, moved, _ = self._decide_answers(mine, ours, transfers, seen)
        await self._write(conn, changes, transfers)
        return moved

    def _decide_answers(
        self,
        answers: Sequence[tuple[Envelope, CommandOutcome]],
        ours: Mapping[UUID, tuple[str, Step]],
        transfers: dict[str, Transfer],
        seen: set[UUID],
    ) -> tuple[Changes, int, bool]:
        """The batch's changes, how many answers moved a transfer on, and whether every
        answer appended events. `transfers` and `seen` are the batch's own."""
        now = self.clock()
        changes, moved, all_appended = Changes(now), 0, True

        for envelope, outcome in answers:
            if envelope.message_id in seen:
                all_appended = False
                continue
            seen.add(envelope.message_id)
            transfer_id, step = ours[outcome.command_id]
            transfer = transfers[transfer_id]
            events = on_step_answer(transfer.state, step, outcome.accepted, outcome.code)
            all_appended = all_appended and bool(events)
            if events:
                moved += 1
                self._record(changes, transfer, events, cause=envelope.message_id, now=now)
                if step == "withdraw" and outcome.accepted:
                    # For the crash test: the debit is decided, the deposit not yet committed.
                    crash_point("transfers-saga.after-debit-before-commit")
            changes.answered.append(outcome.command_id)
            changes.processed.append((envelope.message_id, None))
        return changes, moved, all_appended

    # --- shared by both reactions --------------------------------------------------------------

    def _record(
        self,
        changes: Changes,
        transfer: Transfer,
        events: list[TransferEvent],
        *,
        cause: UUID,
        now: datetime,
    ) -> None:
        """Stamp the transfer's new events and issue the account commands they call for."""
        assert transfer.correlation_id is not None  # set by TransferStarted, the first event
        stream_id = transfer.state.transfer_id or events[0].transfer_id
        sealed = seal_events(
            events,
            cause=cause,
            correlation_id=transfer.correlation_id,
            stream_id=stream_id,
            after_version=transfer.version,
            occurred_at=now,
        )
        for event, envelope in zip(events, sealed, strict=True):
            transfer.state = evolve(transfer.state, event)
            transfer.version += 1
            changes.events.append(envelope)
            changes.outbox.append(OutboxMessage(self.topics.transfer_events, stream_id, envelope))
            for step, command in commands_after(transfer.state, event):
                command_id = step_command_id(stream_id, step)
                message = OutboxMessage(
                    self.topics.account_commands,
                    command.account_id,
                    seal(
                        command,
                        message_id=command_id,
                        correlation_id=transfer.correlation_id,
                        causation_id=envelope.message_id,
                        occurred_at=now,
                        reply_to=self.topics.step_outcomes,
                    ),
                )
                changes.outbox.append(message)
                changes.steps.append((command_id, stream_id, step, message))

    async def _write(
        self, conn: Connection, changes: Changes, transfers: dict[str, Transfer]
    ) -> None:
        """Flush the batch; then its transfers (those that exist) and steps are known as
        written. If the flush fails, whether it committed is not known: they are forgotten."""
        try:
            await self._flush(conn, changes)
        except BaseException:
            self.known.forget(transfers)
            raise
        self.known.remember({i: replace(t) for i, t in transfers.items() if t.version > 0})
        self.known_steps.remember({c: (t, step) for c, t, step, _ in changes.steps})

    async def _flush(self, conn: Connection, changes: Changes) -> None:
        """The batch's events, outbox rows, processed records and saga steps: one statement."""
        if not (changes.events or changes.outbox or changes.processed or changes.answered):
            return
        now = changes.now
        statement = WriteStatement()
        statement.include_changes(changes.events, changes.outbox, changes.processed)
        # The steps' writes only when they have rows: a start batch answers no step, and its
        # statement is the shorter for it (the store's own writes are always there).
        if steps := changes.steps:
            statement.add(
                ISSUE_STEPS,
                [command_id for command_id, _, _, _ in steps],
                [transfer_id for _, transfer_id, _, _ in steps],
                [step for _, _, step, _ in steps],
                [message.topic for _, _, _, message in steps],
                [message.key for _, _, _, message in steps],
                [message.value for _, _, _, message in steps],
                now + timedelta(seconds=self.step_timeout),
            )
        if changes.answered:
            statement.add(MARK_ANSWERED, changes.answered, now)
        await statement.execute(conn, self.relay)

    # --- steps with no answer in time --------------------------------------------------------

    async def resend_due_steps(self, limit: int = 200) -> int:
        """Send again, with the same command id, every step whose answer is overdue; the next
        deadline doubles each time (up to max_step_backoff). A step whose stored command can
        no longer be read is dead-lettered instead, once. Returns how many were re-sent."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT command_id, transfer_id, step, topic, key, command, attempts"
                " FROM saga_steps WHERE answered_at IS NULL AND dead_lettered_at IS NULL"
                " AND next_attempt_at <= now()"
                " ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED",
                limit,
            )
            resent: list[tuple[asyncpg.Record, OutboxMessage]] = []
            for r in rows:
                try:
                    resent.append((r, self._resent(r)))
                except Exception as error:  # whatever it is, this step cannot go again
                    await self._dead_letter(conn, r, error)
            if not resent:
                return 0
            await add_to_outbox(conn, [message for _, message in resent])
            await conn.executemany(
                "UPDATE saga_steps SET attempts = attempts + 1, next_attempt_at = now()"
                " + make_interval(secs => $2) WHERE command_id = $1",
                [(r["command_id"], self._backoff(r["attempts"])) for r, _ in resent],
            )
        for r, _ in resent:
            log.warning(
                "transfer %s: no answer to %s after %d attempt(s); sent again",
                r["transfer_id"],
                r["step"],
                r["attempts"],
            )
        return len(resent)

    def _resent(self, row: asyncpg.Record) -> OutboxMessage:
        # Asks for the answer on the step outcomes topic even if the step was first sent by
        # an older saga, which read its answers among the command API's outcomes.
        envelope = Envelope.model_validate_json(row["command"]).model_copy(
            update={"reply_to": self.topics.step_outcomes}
        )
        return OutboxMessage(row["topic"], row["key"], envelope)

    async def _dead_letter(self, conn: Connection, row: asyncpg.Record, error: Exception) -> None:
        """Publish a step that cannot be sent to the dead-letter topic, then mark it so: if
        the mark is lost, the step is dead-lettered again, never lost."""
        reason = f"the saga cannot send step {row['step']} again: {error!r}"
        if self.dead_letters is None:
            log.error("transfer %s: %s (no dead-letter topic)", row["transfer_id"], reason)
        else:
            await self.dead_letters.publish(
                row["key"].encode(),
                row["command"],
                reason,
                source=f"saga step {row['command_id']}",
                headers={"transfer-id": row["transfer_id"], "step": row["step"]},
            )
        await conn.execute(
            "UPDATE saga_steps SET dead_lettered_at = now() WHERE command_id = $1",
            row["command_id"],
        )

    def _backoff(self, attempts: int) -> float:
        return float(min(self.max_step_backoff, self.step_timeout * 2**attempts))

    async def resend_forever(self, interval: float) -> None:
        """Re-send overdue steps every `interval` seconds until cancelled. A failure is logged
        and the next round tries again: this loop is what rescues lost steps."""
        while True:
            try:
                await self.resend_due_steps()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("checking overdue saga steps failed: %s", error)
            except Exception:
                log.exception("checking overdue saga steps failed unexpectedly; will try again")
            await asyncio.sleep(interval)
