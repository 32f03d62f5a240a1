"""The event store's tables in memory, for unit tests of a service's handlers: what PostgreSQL
enforces (a stream's next version, a message processed once) is enforced here too."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from uuid import UUID

from bank_shared.contracts.envelope import Envelope
from bank_shared.eventstore.snapshots import SnapshotRow
from bank_shared.eventstore.store import Changes, ConcurrencyError, OutboxMessage


class InMemoryStorage:
    def __init__(self) -> None:
        self.events: dict[str, list[Envelope]] = {}
        self.event_ids: set[UUID] = set()
        self.outbox: list[OutboxMessage] = []
        self.processed: dict[UUID, OutboxMessage | None] = {}
        self.writes: list[tuple[str, tuple[object, ...]]] = []
        self.snapshots: dict[str, SnapshotRow] = {}

    async def read_streams(self, stream_ids: Collection[str]) -> dict[str, list[Envelope]]:
        return {i: list(self.events[i]) for i in stream_ids if i in self.events}

    async def read_from_snapshots(
        self, stream_ids: Collection[str], fingerprint: str
    ) -> dict[str, tuple[SnapshotRow | None, list[Envelope]]]:
        """As the SQL does: the snapshot, then the events after it if it is this code's."""
        found: dict[str, tuple[SnapshotRow | None, list[Envelope]]] = {}
        for stream_id in stream_ids:
            snapshot = self.snapshots.get(stream_id)
            after = snapshot.version if snapshot and snapshot.fingerprint == fingerprint else 0
            events = [e for e in self.events.get(stream_id, []) if (e.stream_version or 0) > after]
            if snapshot is not None or events:
                found[stream_id] = (snapshot, events)
        return found

    async def write_snapshots(self, rows: Sequence[SnapshotRow]) -> None:
        for row in rows:
            known = self.snapshots.get(row.stream_id)
            if known is None or known.version <= row.version:
                self.snapshots[row.stream_id] = row

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
