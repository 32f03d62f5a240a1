"""Append and load event streams, write outbox rows and processed-message records, atomically.

Every function takes a connection the caller has opened a transaction on: the caller decides
what one atomic unit is (load, decide, append events + outbox + processed record, commit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from bank_shared.contracts.envelope import Envelope, to_bytes
from bank_shared.db import Connection

# Woken on commit: NOTIFY is transactional, so the relay hears of rows only once they are visible.
OUTBOX_CHANNEL = "bank_outbox"


class ConcurrencyError(Exception):
    """Another writer appended to the stream first; reload it and decide again."""


@dataclass(frozen=True)
class OutboxMessage:
    topic: str
    key: str
    envelope: Envelope

    @property
    def value(self) -> bytes:
        return to_bytes(self.envelope)


@dataclass(frozen=True)
class RecordedEvent:
    global_position: int
    stream_id: str
    version: int
    envelope: Envelope


async def load_stream(conn: Connection, stream_id: str) -> list[RecordedEvent]:
    rows = await conn.fetch(
        "SELECT global_position, stream_id, version, envelope FROM events"
        " WHERE stream_id = $1 ORDER BY version",
        stream_id,
    )
    return [
        RecordedEvent(
            r["global_position"],
            r["stream_id"],
            r["version"],
            Envelope.model_validate_json(r["envelope"]),
        )
        for r in rows
    ]


async def append_events(
    conn: Connection,
    stream_id: str,
    expected_version: int,
    events: Sequence[Envelope],
) -> int:
    """Append `events` after `expected_version`; return the new version of the stream.

    The envelopes must already carry their `stream_version` (expected_version + 1, + 2, ...).
    """
    records = []
    for offset, envelope in enumerate(events, start=1):
        if envelope.stream_version != expected_version + offset or envelope.stream_id != stream_id:
            raise ValueError(
                f"event {envelope.type} is stamped {envelope.stream_id}@{envelope.stream_version},"
                f" expected {stream_id}@{expected_version + offset}"
            )
        records.append(
            (
                stream_id,
                expected_version + offset,
                envelope.message_id,
                envelope.type,
                envelope.schema_version,
                envelope.model_dump_json(),
            )
        )
    try:
        await conn.executemany(
            "INSERT INTO events (stream_id, version, event_id, event_type, schema_version,"
            " envelope) VALUES ($1, $2, $3, $4, $5, $6::jsonb)",
            records,
        )
    except asyncpg.UniqueViolationError as error:
        if error.constraint_name == "events_stream_version_unique":
            raise ConcurrencyError(
                f"stream {stream_id} moved past version {expected_version}"
            ) from error
        raise
    return expected_version + len(events)


async def add_to_outbox(conn: Connection, messages: Sequence[OutboxMessage]) -> None:
    if not messages:
        return
    await conn.executemany(
        "INSERT INTO outbox (topic, key, message_id, value) VALUES ($1, $2, $3, $4)",
        [(m.topic, m.key, m.envelope.message_id, m.value) for m in messages],
    )
    await conn.execute("SELECT pg_notify($1, '')", OUTBOX_CHANNEL)


@dataclass(frozen=True)
class Processed:
    """A message this service already acted on, and the answer it gave (if it gives one)."""

    answer: OutboxMessage | None


async def find_processed(conn: Connection, message_id: UUID) -> Processed | None:
    """None if `message_id` is new. A concurrent first processing of the same message is
    stopped by the primary key in `remember_processed`, not here."""
    row = await conn.fetchrow(
        "SELECT topic, key, answer FROM processed_messages WHERE message_id = $1", message_id
    )
    if row is None:
        return None
    if row["answer"] is None:
        return Processed(answer=None)
    envelope = Envelope.model_validate_json(row["answer"])
    return Processed(answer=OutboxMessage(row["topic"], row["key"], envelope))


async def remember_processed(
    conn: Connection, message_id: UUID, answer: OutboxMessage | None
) -> None:
    """Record `message_id` as processed, with its answer, in the caller's transaction.
    A duplicate processed concurrently fails here, so its effect rolls back with it."""
    try:
        await conn.execute(
            "INSERT INTO processed_messages (message_id, topic, key, answer)"
            " VALUES ($1, $2, $3, $4)",
            message_id,
            answer.topic if answer else None,
            answer.key if answer else None,
            answer.value if answer else None,
        )
    except asyncpg.UniqueViolationError as error:
        raise ConcurrencyError(f"message {message_id} was processed concurrently") from error
