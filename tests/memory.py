"""The event store's tables in memory, for unit tests of a service's handlers: what PostgreSQL
enforces (a stream's next version, a message processed once) is enforced here too."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from uuid import UUID

from bank_shared.contracts.envelope import Envelope
from bank_shared.eventstore.store import Changes, ConcurrencyError, OutboxMessage


class InMemoryStorage:
    def __init__(self) -> None:
        self.events: dict[str, list[Envelope]] = {}
        self.event_ids: set[UUID] = set()
        self.outbox: list[OutboxMessage] = []
        self.processed: dict[UUID, OutboxMessage | None] = {}
        self.writes: list[tuple[str, tuple[object, ...]]] = []

    async def read_streams(self, stream_ids: Collection[str]) -> dict[str, list[Envelope]]:
        return {i: list(self.events[i]) for i in stream_ids if i in self.events}

    async def read_answers(self, message_ids: Collection[UUID]) -> dict[UUID, OutboxMessage | None]:
        return {i: self.processed[i] for i in message_ids if i in self.processed}

    async def write(self, changes: Changes) -> None:
        """All of `changes` or, if another writer got there first, nothing."""
        appended: Counter[str] = Counter()
        for event in changes.events:
            stream = event.stream_id or ""
            appended[stream] += 1
            expected = len(self.events.get(stream, [])) + appended[stream]
            if event.stream_version != expected:
                raise ConcurrencyError(f"{stream} is at version {expected - 1} already")
        ids = [message_id for message_id, _ in changes.processed]
        if len(set(ids)) < len(ids) or self.processed.keys() & set(ids):
            raise ConcurrencyError("a message was processed already")
        event_ids = [event.message_id for event in changes.events]
        if len(set(event_ids)) < len(event_ids) or self.event_ids & set(event_ids):
            raise ConcurrencyError("an event was appended already")
        for event in changes.events:
            self.events.setdefault(event.stream_id or "", []).append(event)
            self.event_ids.add(event.message_id)
        self.outbox += changes.outbox
        self.processed.update(changes.processed)
        self.writes += changes.writes

    def sent_to(self, topic: str) -> list[Envelope]:
        """What the relay would publish on `topic`, in order."""
        return [message.envelope for message in self.outbox if message.topic == topic]
