"""The unit of work of one batch of messages: read the streams they address, decide, and write
everything the batch changed (events, outbox rows, answers, what was processed) at once.

A handler reads like this (the accounts service's):

    async for uow in store.attempts(commands):       # a fresh unit of work until one commits
        await uow.load({command.account_id for _, command in commands})
        for envelope, command in commands:
            if uow.replayed(envelope):                 # a redelivered command: its first answer
                continue
            account = uow.stream(command.account_id)
            uow.record(envelope, command.account_id, decide(command, account.state))
        await uow.commit()

`commit` writes in one statement. If another writer got there first (a stream's next version,
or the same message), nothing is written and the loop gives the handler a fresh unit of work,
which reads the streams again; so a conflict is retried, never lost, never applied twice.

Known states: the store remembers each stream as it last wrote or read it. The first unit of
work of a batch decides from those, without reading (a stream it does not know is taken as new).
Its write is kept only if it proves they were current: every message of the batch must have
appended events, to every stream a decision looked at, so that UNIQUE (stream_id, version) and
the processed-message key refuse the write if another writer moved a stream or handled a
message first. Anything else (a rejection,
an answer sent again, an answer that moves nothing) is decided again from a read before anything
is written. This assumes PostgreSQL never loses a commit it acknowledged; where a failover to an
asynchronous replica can happen, run with no known states (`known=0`).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, Protocol, TypeVar
from uuid import UUID

from bank_shared.clock import Clock, utc_now
from bank_shared.contracts.envelope import Envelope, Message, read_payload, seal_events
from bank_shared.contracts.outcomes import (
    CommandOutcome,
    Rejection,
    accepted,
    answer_to,
    rejected,
)
from bank_shared.eventstore.known import KnownStates
from bank_shared.eventstore.snapshots import Snapshots, SnapshotStorage
from bank_shared.eventstore.store import Changes, ConcurrencyError, OutboxMessage
from bank_shared.topics import TopicSettings

S = TypeVar("S")


@dataclass(frozen=True)
class Aggregate(Generic[S]):
    """What the store needs to know of an aggregate: its state before any event, how an event
    changes it, which events are its own, and what an accepted command's answer says of it."""

    initial: S
    evolve: Callable[[S, Any], S]
    events: tuple[type[Message], ...]
    answer_details: Callable[[S], dict[str, Any]] = lambda _: {}

    def fold(self, history: Iterable[Envelope], state: S | None = None) -> S:
        state = self.initial if state is None else state
        for envelope in history:
            event = read_payload(envelope)
            if not isinstance(event, self.events):
                raise TypeError(f"{envelope.type} in stream {envelope.stream_id} is not ours")
            state = self.evolve(state, event)
        return state


@dataclass(frozen=True)
class Stream(Generic[S]):
    """An aggregate's state and the version of the last event it folded (0: no events yet)."""

    state: S
    version: int = 0


class Storage(SnapshotStorage, Protocol):
    """Where a store reads and writes (PostgreSQL in the services, a dict in unit tests), its
    snapshots included."""

    async def read_streams(self, stream_ids: Collection[str]) -> dict[str, list[Envelope]]: ...

    async def read_answers(
        self, message_ids: Collection[UUID]
    ) -> dict[UUID, OutboxMessage | None]: ...

    async def write(self, changes: Changes) -> None: ...


class EventStore(Generic[S]):
    """The streams of one aggregate, and the units of work that decide batches against them."""

    def __init__(
        self,
        storage: Storage,
        aggregate: Aggregate[S],
        topics: TopicSettings,
        *,
        events_topic: str,
        known: int = 10_000,
        attempts: int = 10,
        snapshot_every: int = 0,
        clock: Clock = utc_now,
    ) -> None:
        """`known`: how many streams' last state to keep (0: none, every batch reads);
        `attempts`: how many conflicting writes a batch may meet before it fails;
        `snapshot_every`: a snapshot each this many events of a stream (0: none;
        snapshots.py)."""
        self.storage = storage
        self.aggregate = aggregate
        self.topics = topics
        self.events_topic = events_topic
        self.known: KnownStates[str, Stream[S]] = KnownStates(known, version=_version)
        self.max_attempts = attempts
        self.clock = clock
        # Writes the database refused because another writer got there first.
        self.conflicts = 0
        self.snapshots: Snapshots[S] | None = (
            Snapshots(aggregate.initial, aggregate.evolve, aggregate.events, every=snapshot_every)
            if snapshot_every
            else None
        )

    async def read(self, stream_ids: Collection[str]) -> dict[str, Stream[S]]:
        """Each stream as it is now (version 0: no events yet): from its snapshot and the
        events after it where it has a snapshot this code can trust, else from its first
        event."""
        if self.snapshots is None:
            histories = await self.storage.read_streams(stream_ids)
            return {i: self._fold(histories.get(i, [])) for i in stream_ids}
        snapshots = self.snapshots
        found = await self.storage.read_from_snapshots(stream_ids, snapshots.fingerprint)
        starts: dict[str, tuple[Stream[S] | None, list[Envelope]]] = {}
        untrusted: list[str] = []
        for stream_id in stream_ids:
            snapshot, events = found.get(stream_id, (None, []))
            state = snapshots.restore(snapshot) if snapshot is not None else None
            if snapshot is not None and state is not None:
                starts[stream_id] = (Stream(state, snapshot.version), events)
            elif snapshot is not None and snapshot.fingerprint == snapshots.fingerprint:
                # The query skipped the events this snapshot claims to cover, and it cannot be
                # trusted: the stream is read again, whole.
                untrusted.append(stream_id)
            else:
                starts[stream_id] = (None, events)  # the query gave every event
        if untrusted:
            histories = await self.storage.read_streams(untrusted)
            starts.update({i: (None, histories.get(i, [])) for i in untrusted})
        streams: dict[str, Stream[S]] = {}
        for stream_id, (start, events) in starts.items():
            stream = streams[stream_id] = self._fold(events, start)
            snapshots.after_load(stream_id, len(events), stream.version, stream.state)
        return streams

    def _fold(self, events: Sequence[Envelope], start: Stream[S] | None = None) -> Stream[S]:
        start = start or Stream(self.aggregate.initial)
        if not events:
            return start
        version = events[-1].stream_version or 0
        return Stream(self.aggregate.fold(events, start.state), version)

    async def attempts(
        self, batch: Sequence[tuple[Envelope, Message]]
    ) -> AsyncIterator[UnitOfWork[S]]:
        """Units of work for `batch`, until one commits: see the module's docstring."""
        from_memory = self.known.enabled
        conflicts = 0
        while True:
            uow = UnitOfWork(self, batch, from_memory=from_memory)
            if not from_memory:
                await uow.read_answers()
            yield uow
            if uow.result is Result.COMMITTED:
                return
            if uow.result is Result.OPEN:
                raise RuntimeError("a unit of work was left without commit()")
            if not from_memory:
                conflicts += 1
                if conflicts >= self.max_attempts:
                    raise ConcurrencyError(f"a batch still conflicted after {conflicts} tries")
            from_memory = False  # what was known is out of date, or proves nothing here


class Result(enum.Enum):
    OPEN = "open"
    COMMITTED = "committed"
    REFUSED = "refused"  # a conflict, or decided from known states without proof


class UnitOfWork(Generic[S]):
    """One attempt at a batch: what it read, what it decided, and what it will write."""

    def __init__(
        self, store: EventStore[S], batch: Sequence[tuple[Envelope, Message]], *, from_memory: bool
    ) -> None:
        self.store = store
        self.from_memory = from_memory
        self.now = store.clock()  # the time of the batch's events and answers
        self.outcomes: list[CommandOutcome] = []
        self.result = Result.OPEN
        self._batch = [envelope.message_id for envelope, _ in batch]
        self._streams: dict[str, Stream[S]] = {}
        self._answers: dict[UUID, OutboxMessage | None] = {}
        # What the proof of a batch decided from known states needs: every message appended
        # events, to every stream a decision looked at.
        self._appended_for: set[UUID] = set()
        self._appended_to: set[str] = set()
        self._decided_on: set[str] = set()
        # The version each stream the batch appends to had before it (for the snapshots).
        self._versions_before: dict[str, int] = {}
        self._changes = Changes()
        self._rows: dict[str, list[tuple[object, ...]]] = {}
        self._after_commit: list[Callable[[], None]] = []

    async def read_answers(self) -> None:
        self._answers.update(await self.store.storage.read_answers(self._batch))

    async def load(self, stream_ids: Collection[str]) -> None:
        """Read these streams (one query), or take them from what the store knows."""
        missing = [i for i in stream_ids if i not in self._streams]
        if self.from_memory:
            known = self.store.known.any_of(missing)
            self._streams.update(
                {i: known.get(i, Stream(self.store.aggregate.initial)) for i in missing}
            )
            return
        self._streams.update(await self.store.read(missing))

    def stream(self, stream_id: str) -> Stream[S]:
        """A loaded stream, as the batch has changed it so far."""
        self._decided_on.add(stream_id)
        return self._streams[stream_id]

    def replayed(self, message: Envelope) -> bool:
        """True if `message` was processed already (a redelivery): its answer, if it got one,
        is sent again, to where this copy asks for it, and nothing else happens."""
        if message.message_id not in self._answers:
            return False
        answer = self._answers[message.message_id]
        if answer is not None:
            topic = self.store.topics.outcome_topic(message.reply_to)
            self._changes.outbox.append(replace(answer, topic=topic))
            outcome = read_payload(answer.envelope)  # stored long ago, maybe: upcast
            assert isinstance(outcome, CommandOutcome)
            self.outcomes.append(outcome)
        return True

    def record(
        self, command: Envelope, stream_id: str, decision: Sequence[Message] | Rejection
    ) -> list[Envelope]:
        """A command's decision: its events appended if it was accepted, and its answer.
        Returns the events it appended."""
        if isinstance(decision, Rejection):
            outcome = rejected(command, stream_id, decision, self.stream(stream_id).version)
            self.answer(command, outcome)
            return []
        appended = self.append(stream_id, decision, cause=command)
        stream = self.stream(stream_id)
        details = self.store.aggregate.answer_details(stream.state)
        self.answer(command, accepted(command, stream_id, stream.version, **details))
        return appended

    def react(self, message: Envelope, stream_id: str, events: Sequence[Message]) -> list[Envelope]:
        """A message that gets no answer (an event, an answer): `events` appended to a stream
        because of it, and the message recorded as processed."""
        appended = self.append(stream_id, events, cause=message)
        self.processed(message)
        return appended

    def append(
        self, stream_id: str, events: Sequence[Message], *, cause: Envelope
    ) -> list[Envelope]:
        """Append `events` to a stream, caused by `cause`, and publish them on the events topic."""
        stream = self.stream(stream_id)
        sealed = seal_events(
            events,
            cause=cause.message_id,
            correlation_id=cause.correlation_id,
            stream_id=stream_id,
            after_version=stream.version,
            occurred_at=self.now,
        )
        self._versions_before.setdefault(stream_id, stream.version)
        state = stream.state
        for event in events:
            state = self.store.aggregate.evolve(state, event)
        self._streams[stream_id] = Stream(state, stream.version + len(events))
        self._changes.events += sealed
        topic = self.store.events_topic
        self._changes.outbox += [OutboxMessage(topic, stream_id, e) for e in sealed]
        if events:
            self._appended_for.add(cause.message_id)
            self._appended_to.add(stream_id)
        return sealed

    def answer(self, command: Envelope, outcome: CommandOutcome) -> None:
        """Send `outcome` where the command asked, and record the command as processed."""
        topic = self.store.topics.outcome_topic(command.reply_to)
        answer = OutboxMessage(topic, outcome.stream_id, answer_to(command, outcome, self.now))
        self._changes.outbox.append(answer)
        self.processed(command, answer)
        self.outcomes.append(outcome)

    def processed(self, message: Envelope, answer: OutboxMessage | None = None) -> None:
        """Record `message` as processed: it changes nothing if it comes again."""
        self._changes.processed.append((message.message_id, answer))
        self._answers[message.message_id] = answer

    def send(self, message: OutboxMessage) -> None:
        """Publish a message once the batch is committed (e.g. the saga's next command)."""
        self._changes.outbox.append(message)

    def write_row(self, sql: str, *values: object) -> None:
        """A row of a service's own write, in the batch's statement: `sql` takes one array
        per column ($1, $2, ... as if alone), and gets the rows of every call with it."""
        self._rows.setdefault(sql, []).append(values)

    def after_commit(self, action: Callable[[], None]) -> None:
        self._after_commit.append(action)

    async def commit(self) -> None:
        """Write everything at once; on a conflict (or without proof), write nothing and let
        `attempts` give a fresh unit of work."""
        if self.from_memory and not (
            self._appended_for.issuperset(self._batch)
            and self._appended_to.issuperset(self._decided_on)
        ):
            self.result = Result.REFUSED
            return
        known = self.store.known
        for sql, rows in self._rows.items():
            self._changes.writes.append(
                (sql, tuple(list(column) for column in zip(*rows, strict=True)))
            )
        try:
            if self._changes:
                await self.store.storage.write(self._changes)
        except ConcurrencyError:
            known.forget(self._streams)
            self.store.conflicts += 1
            self.result = Result.REFUSED
            return
        except BaseException:
            known.forget(self._streams)  # whether it committed is not known
            raise
        known.remember({i: s for i, s in self._streams.items() if s.version > 0})
        if self.store.snapshots is not None:
            for stream_id, before in self._versions_before.items():
                stream = self._streams[stream_id]
                self.store.snapshots.after_write(stream_id, before, stream.version, stream.state)
        for action in self._after_commit:
            action()
        self.result = Result.COMMITTED


def _version(stream: Stream[Any]) -> int:
    return stream.version
