"""The event store's tables, read and written: streams of events, the outbox, and the messages
already processed. Everything a batch writes goes in one statement, atomic on its own."""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

import asyncpg

from bank_shared.contracts.envelope import Envelope, current_versions, to_bytes, to_json
from bank_shared.contracts.upcasting import unreadable_versions
from bank_shared.db import Connection
from bank_shared.eventstore import snapshots
from bank_shared.eventstore.snapshots import SnapshotRow

# Woken on commit: NOTIFY is transactional, so the relay hears of rows only once they are visible.
OUTBOX_CHANNEL = "bank_outbox"


class ConcurrencyError(Exception):
    """Another writer got there first (a stream's next version, or a message processed);
    nothing was written. Decide again from a fresh read."""


@dataclass(frozen=True)
class OutboxMessage:
    """A message to publish once the statement that wrote it has committed."""

    topic: str
    key: str
    envelope: Envelope

    @property
    def value(self) -> bytes:
        return to_bytes(self.envelope)


@dataclass(frozen=True)
class OutboxRow:
    """An outbox row as committed: what the relay sends, and the id it marks published."""

    id: int
    topic: str
    key: str
    value: bytes


class CommitListener(Protocol):
    """Told of a write's outbox rows right after its commit: the relay of the same process,
    which then sends them without reading them back (handover.py). `token` names the commit in
    its NOTIFY, so the relay knows when every commit before it has been accounted for."""

    def token(self) -> str: ...

    def committed(self, token: str, rows: Sequence[OutboxRow]) -> None: ...


@dataclass
class Changes:
    """What one batch writes: events stamped with their stream and version, outbox rows, the
    messages it processed (with the answer each got, if any), and a service's own writes."""

    events: list[Envelope] = field(default_factory=list)
    outbox: list[OutboxMessage] = field(default_factory=list)
    processed: list[tuple[UUID, OutboxMessage | None]] = field(default_factory=list)
    writes: list[tuple[str, tuple[object, ...]]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.events or self.outbox or self.processed or self.writes)


async def read_streams(conn: Connection, stream_ids: Iterable[str]) -> dict[str, list[Envelope]]:
    """Whole streams, each in version order, in one query (streams with no events are absent)."""
    rows = await conn.fetch(
        "SELECT stream_id, envelope FROM events WHERE stream_id = ANY($1::text[])"
        " ORDER BY stream_id, version",
        list(set(stream_ids)),
    )
    streams: dict[str, list[Envelope]] = {}
    for row in rows:
        streams.setdefault(row["stream_id"], []).append(
            Envelope.model_validate_json(row["envelope"])
        )
    return streams


async def read_answers(
    conn: Connection, message_ids: Iterable[UUID]
) -> dict[UUID, OutboxMessage | None]:
    """Which of `message_ids` were processed already, with the answer each got (if any)."""
    rows = await conn.fetch(
        "SELECT message_id, topic, key, answer FROM processed_messages"
        " WHERE message_id = ANY($1::uuid[])",
        list(set(message_ids)),
    )
    return {
        row["message_id"]: OutboxMessage(
            row["topic"], row["key"], Envelope.model_validate_json(row["answer"])
        )
        if row["answer"] is not None
        else None
        for row in rows
    }


# WITH ORDINALITY ... ORDER BY: global positions and outbox ids follow the lists' order.
APPEND_EVENTS = (
    "INSERT INTO events (stream_id, version, event_id, event_type, schema_version, envelope)"
    " SELECT stream_id, version, event_id, event_type, schema_version, envelope"
    " FROM unnest($1::text[], $2::int[], $3::uuid[], $4::text[], $5::int[], $6::jsonb[])"
    " WITH ORDINALITY"
    " AS e(stream_id, version, event_id, event_type, schema_version, envelope, n)"
    " ORDER BY n"
)
QUEUE_OUTBOX = (
    "INSERT INTO outbox (topic, key, message_id, value)"
    " SELECT topic, key, message_id, value"
    " FROM unnest($1::text[], $2::text[], $3::uuid[], $4::bytea[])"
    " WITH ORDINALITY AS m(topic, key, message_id, value, n) ORDER BY n"
    " RETURNING id"
)
REMEMBER_PROCESSED = (
    "INSERT INTO processed_messages (message_id, topic, key, answer)"
    " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[])"
)
# Wakes the relay ($1, OUTBOX_CHANNEL), naming the commit ($2: a CommitListener's token, or
# ''), and returns the ids of the outbox rows written (w1: QUEUE_OUTBOX is the second write
# below), in list order.
NOTIFY_RELAY = "SELECT pg_notify($1, $2), ARRAY(SELECT id FROM w1 ORDER BY id)"


async def write(conn: Connection, changes: Changes, relay: CommitListener | None = None) -> None:
    """Write `changes` in one statement. UNIQUE (stream_id, version) is the optimistic
    concurrency check, the event-id key stops one command applied twice, the processed-message
    key one message processed twice: any of them refuses the whole statement
    (ConcurrencyError).

    Outside a transaction the statement's end is its commit: then `relay` is handed the outbox
    rows at once. Inside one it is not (the relay reads them from the outbox instead)."""
    if not changes:
        return
    if not changes.outbox or conn.is_in_transaction():
        relay = None
    values = [m.value for m in changes.outbox]
    writes = _writes(changes, values)
    token = relay.token() if relay is not None else ""
    then = (NOTIFY_RELAY, (OUTBOX_CHANNEL, token)) if changes.outbox else ("SELECT 1", ())
    sql, args = one_statement(writes, then=then)
    try:
        row = await conn.fetchrow(sql, *args)
    except asyncpg.UniqueViolationError as error:
        raise ConcurrencyError(f"another writer got there first: {error.detail}") from error
    if relay is not None and row is not None:
        ids: list[int] = row[1]
        relay.committed(
            token,
            [
                OutboxRow(row_id, m.topic, m.key, value)
                for row_id, m, value in zip(ids, changes.outbox, values, strict=True)
            ],
        )


Write = tuple[str, tuple[object, ...]]


def _writes(changes: Changes, values: list[bytes]) -> list[Write]:
    """The statement's writes, in this order: events, outbox rows (`values`), messages
    processed, then the service's own."""
    return [
        (
            APPEND_EVENTS,
            (
                [e.stream_id for e in changes.events],
                [e.stream_version for e in changes.events],
                [e.message_id for e in changes.events],
                [e.type for e in changes.events],
                [e.schema_version for e in changes.events],
                [to_json(e) for e in changes.events],
            ),
        ),
        (
            QUEUE_OUTBOX,
            (
                [m.topic for m in changes.outbox],
                [m.key for m in changes.outbox],
                [m.envelope.message_id for m in changes.outbox],
                values,
            ),
        ),
        (
            REMEMBER_PROCESSED,
            (
                [message_id for message_id, _ in changes.processed],
                [a.topic if a else None for _, a in changes.processed],
                [a.key if a else None for _, a in changes.processed],
                [a.value if a else None for _, a in changes.processed],
            ),
        ),
        *changes.writes,
    ]


PARAMETER = re.compile(r"\$(\d+)")


def one_statement(writes: Sequence[Write], *, then: Write) -> tuple[str, list[object]]:
    """INSERTs, UPDATEs and DELETEs, each written with its parameters numbered from $1, as one
    statement of data-modifying CTEs (w0, w1, ...) followed by the query `then`: PostgreSQL runs
    them all, atomically, in one round trip. Each sees the tables as they were before the
    statement."""
    ctes: list[str] = []
    args: list[object] = []
    for n, (sql, values) in enumerate(writes):
        ctes.append(f"w{n} AS ({_renumbered(sql, len(args))})")
        args.extend(values)
    final, values = then
    return f"WITH {', '.join(ctes)} {_renumbered(final, len(args))}", [*args, *values]


@functools.lru_cache(maxsize=64)
def _renumbered(sql: str, offset: int) -> str:
    # Cached: a service builds the same few statements for every batch.
    return PARAMETER.sub(lambda m: f"${int(m.group(1)) + offset}", sql)


class UnreadableStoreError(RuntimeError):
    """The store holds events this code cannot read; the text names each, and what to do."""


async def check_stored_versions(conn: Connection, service: str) -> None:
    """Refuse to start a service whose store holds an event type and version that no upcaster
    chain brings to what this code reads: better at start than at the first load of it."""
    rows = await conn.fetch("SELECT DISTINCT event_type, schema_version FROM events")
    problems = unreadable_versions(
        [(r["event_type"], r["schema_version"]) for r in rows], current_versions()
    )
    if problems:
        raise UnreadableStoreError(
            f"{service} cannot read every event in the store, so it does not start: "
            + "; ".join(problems)
        )


class HasPool(Protocol):
    @property
    def pool(self) -> asyncpg.Pool[Any]: ...


class PostgresStorage:
    """The event store's tables in a service's own database (the `Storage` of unit_of_work.py).
    Each call takes a pooled connection for its one statement; each write's outbox rows are
    handed to `relay`, the outbox relay of this process."""

    def __init__(self, database: HasPool, relay: CommitListener | None = None) -> None:
        self.database = database
        self.relay = relay

    async def read_streams(self, stream_ids: Collection[str]) -> dict[str, list[Envelope]]:
        async with self.database.pool.acquire() as conn:
            return await read_streams(conn, stream_ids)

    async def read_answers(self, message_ids: Collection[UUID]) -> dict[UUID, OutboxMessage | None]:
        async with self.database.pool.acquire() as conn:
            return await read_answers(conn, message_ids)

    async def write(self, changes: Changes) -> None:
        async with self.database.pool.acquire() as conn:
            await write(conn, changes, self.relay)

    async def read_from_snapshots(
        self, stream_ids: Collection[str], fingerprint: str
    ) -> dict[str, tuple[SnapshotRow | None, list[Envelope]]]:
        async with self.database.pool.acquire() as conn:
            return await snapshots.read_from_snapshots(conn, stream_ids, fingerprint)

    async def write_snapshots(self, rows: Sequence[SnapshotRow]) -> None:
        async with self.database.pool.acquire() as conn:
            await snapshots.write_snapshots(conn, rows)
