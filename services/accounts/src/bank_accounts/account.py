"""Handling account commands atomically: load, decide, append events + outbox + outcome."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID

import asyncpg

from bank_shared.clock import Clock, utc_now
from bank_shared.contracts.accounts import (
    ACCOUNT_EVENTS,
    AccountCommand,
    AccountEvent,
)
from bank_shared.contracts.envelope import Envelope, read_payload, seal, seal_events
from bank_shared.contracts.outcomes import CommandOutcome
from bank_shared.db import Connection
from bank_shared.domain.account import INITIAL, AccountState, Rejection, decide, state_after
from bank_shared.eventstore.known import KnownStates, written_if_current
from bank_shared.eventstore.store import (
    CommitListener,
    ConcurrencyError,
    OutboxMessage,
    decide_and_write,
    find_processed,
    last_events,
    save_changes,
)
from bank_shared.ids import derived_id
from bank_shared.topics import TopicSettings

log = logging.getLogger(__name__)


class AccountCommandHandler:
    """The application service around the BankAccount decider."""

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        topics: TopicSettings,
        *,
        max_conflict_retries: int = 10,
        clock: Clock = utc_now,
        relay: CommitListener | None = None,
        known_accounts: int = 10_000,
    ) -> None:
        """`relay`: this process's outbox relay, handed each batch's rows once committed.
        `known_accounts`: how many accounts' last state it keeps, to decide without reading."""
        self.pool = pool
        self.topics = topics
        self.max_conflict_retries = max_conflict_retries
        self.clock = clock
        self.relay = relay
        # Each account's state and version as this process last wrote or read it
        # (eventstore/known.py says when a decision may rest on it).
        self.known: KnownStates[str, tuple[AccountState, int]] = KnownStates(
            known_accounts, version=lambda known: known[1]
        )
        # How many of its writes the database refused because another writer got there first.
        self.refused_writes = 0

    async def handle(self, envelope: Envelope, command: AccountCommand) -> CommandOutcome:
        """Apply `command` exactly once; a redelivered command gets its first outcome again."""
        [outcome] = await self.handle_batch([(envelope, command)])
        return outcome

    async def handle_batch(
        self, commands: Sequence[tuple[Envelope, AccountCommand]]
    ) -> list[CommandOutcome]:
        """Apply a batch, in order: one write statement (events, outcomes, processed records,
        one commit and one fsync) for the whole batch, however many commands it holds; before
        it, two reads, unless every account is known and every command is accepted
        (eventstore/known.py).

        A version conflict (another instance appended to one of the streams first) writes
        nothing, and the batch is decided again from a fresh load. Any other failure writes
        nothing either; the caller then has Kafka redeliver the batch.
        """
        return await decide_and_write(
            self.pool,
            lambda conn, first: self._apply(conn, commands, from_memory=first),
            attempts=self.max_conflict_retries,
            log=log,
            what=f"batch of {len(commands)} account commands",
        )

    async def _apply(
        self,
        conn: Connection,
        commands: Sequence[tuple[Envelope, AccountCommand]],
        *,
        from_memory: bool,
    ) -> list[CommandOutcome]:
        accounts = {c.account_id for _, c in commands}
        known = self.known.all_of(accounts) if from_memory and self.known.enabled else None
        if known is not None:
            batch = self._decide(commands, dict(known), answers={})
            if batch.all_accepted and await written_if_current(
                self._write(conn, batch, accounts), log, "account batch"
            ):
                return batch.outcomes
        earlier = await find_processed(conn, (e.message_id for e, _ in commands))
        newest = await last_events(conn, accounts)
        streams = {
            stream_id: (state_after(account_event(event.envelope)), event.version)
            for stream_id, event in newest.items()
        }
        answers = {
            message_id: p.answer for message_id, p in earlier.items() if p.answer is not None
        }
        return await self._write(conn, self._decide(commands, streams, answers), accounts)

    async def _write(
        self, conn: Connection, batch: DecidedBatch, accounts: set[str]
    ) -> list[CommandOutcome]:
        try:
            await save_changes(conn, batch.events, batch.outbox, batch.processed, self.relay)
        except ConcurrencyError:
            self.refused_writes += 1
            self.known.forget(accounts)
            raise
        except BaseException:
            # Whether it committed is not known (or another writer got there first).
            self.known.forget(accounts)
            raise
        self.known.remember(batch.streams)
        return batch.outcomes

    def _decide(
        self,
        commands: Sequence[tuple[Envelope, AccountCommand]],
        streams: dict[str, tuple[AccountState, int]],
        answers: dict[UUID, OutboxMessage],
    ) -> DecidedBatch:
        """Decide every command in order. `streams` (each account's state and version, updated
        as the batch moves on: a later command of the same account sees what an earlier one
        did) and `answers` (those given before) are the batch's own copies."""
        now = self.clock()
        new_events: list[Envelope] = []
        outbox: list[OutboxMessage] = []
        processed: list[tuple[UUID, OutboxMessage | None]] = []
        outcomes: list[CommandOutcome] = []
        all_accepted = True

        for envelope, command in commands:
            command_id = envelope.message_id
            reply_topic = self.topics.outcome_topic(envelope.reply_to)
            if command_id in answers:
                # Publish the very same outcome again: the sender may have missed the first.
                # To the topic this copy of the command names (a step re-sent by a saga that
                # has since moved its answers to their own topic finds them there).
                outbox.append(replace(answers[command_id], topic=reply_topic))
                outcomes.append(CommandOutcome.model_validate(answers[command_id].envelope.payload))
                all_accepted = False
                continue
            stream_id = command.account_id
            state, version = streams.get(stream_id, (INITIAL, 0))
            decision = decide(command, state)
            if isinstance(decision, Rejection):
                all_accepted = False
                outcome = CommandOutcome(
                    command_id=command_id,
                    command_type=envelope.type,
                    stream_id=stream_id,
                    status="rejected",
                    code=decision.code,
                    reason=decision.reason,
                    version=version,
                )
            else:
                events = seal_events(
                    decision,
                    cause=command_id,
                    correlation_id=envelope.correlation_id,
                    stream_id=stream_id,
                    after_version=version,
                    occurred_at=now,
                )
                version += len(events)
                streams[stream_id] = (state_after(decision[-1]), version)
                new_events += events
                outbox += [OutboxMessage(self.topics.account_events, stream_id, e) for e in events]
                outcome = CommandOutcome(
                    command_id=command_id,
                    command_type=envelope.type,
                    stream_id=stream_id,
                    status="accepted",
                    version=version,
                    balance=decision[-1].balance_after,
                )
            answer = OutboxMessage(
                reply_topic,
                stream_id,
                seal(
                    outcome,
                    message_id=derived_id(command_id, "outcome"),
                    correlation_id=envelope.correlation_id,
                    causation_id=command_id,
                    occurred_at=now,
                ),
            )
            outbox.append(answer)
            answers[command_id] = answer
            processed.append((command_id, answer))
            outcomes.append(outcome)

        return DecidedBatch(new_events, outbox, processed, outcomes, streams, all_accepted)


@dataclass(frozen=True)
class DecidedBatch:
    """What a batch writes, what it answers, and each account's state after it."""

    events: list[Envelope]
    outbox: list[OutboxMessage]
    processed: list[tuple[UUID, OutboxMessage | None]]
    outcomes: list[CommandOutcome]
    streams: dict[str, tuple[AccountState, int]]
    # Whether every command appended events: only then may a batch decided from known
    # states be written (eventstore/known.py).
    all_accepted: bool


def account_event(envelope: Envelope) -> AccountEvent:
    event = read_payload(envelope)
    if not isinstance(event, ACCOUNT_EVENTS):
        raise TypeError(f"{envelope.type} is not an account event (stream {envelope.stream_id})")
    return event
