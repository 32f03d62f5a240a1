"""Snapshots: an aggregate's state saved every N events, so that loading a long stream reads
its newest snapshot and the events after it instead of every event since the first.

The policy (`every`, from each service's settings) takes a snapshot when a write carries a
stream past a multiple of N, and when a load had to fold N events or more (a stream from
before snapshots, or one whose snapshot was of no use). Taking one is never part of a command:
the unit of work only hands the state over after its commit, and `write_forever` saves it
later, in a statement of its own. One that is never written loses nothing.

A snapshot is trusted only if it is exactly what this code would have made:
- its `fingerprint` is a hash of the state's shape, of the `evolve` source that folded it, of
  the events' schema versions and of their upcasters' source; a snapshot taken by other code
  (before a change to `evolve`, say) has another one and is ignored. Only those functions'
  own source counts: a helper `evolve` calls elsewhere is not covered, so keep the state's
  rules inside `evolve`;
- its `checksum` covers the stream, version, fingerprint and state; a row changed by anything
  but this code (a corrupted disk, a hand-made UPDATE) no longer matches it and is ignored.
An ignored snapshot is logged and the stream is folded from its first event, then a fresh
snapshot replaces it: never a crash, never a wrong state.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from pydantic import TypeAdapter, ValidationError

from bank_shared.contracts import upcasting
from bank_shared.contracts.envelope import Envelope, Message
from bank_shared.db import Connection

log = logging.getLogger(__name__)

S = TypeVar("S")


@dataclass(frozen=True)
class SnapshotRow:
    """A row of the snapshots table: a stream's state at `version`, as JSON."""

    stream_id: str
    version: int
    fingerprint: str
    state: str
    checksum: str


def checksum(stream_id: str, version: int, fingerprint: str, state: str) -> str:
    return hashlib.sha256(f"{stream_id}\n{version}\n{fingerprint}\n{state}".encode()).hexdigest()


def fingerprint_of(
    adapter: TypeAdapter[Any], evolve: Callable[..., Any], events: Iterable[type[Message]]
) -> str:
    """What a snapshot depends on: the state's shape, the code of `evolve`, and for each event
    it folds, its version and the code of the upcasters that bring older ones to it. Any
    change to them gives another fingerprint."""
    parts = [json.dumps(adapter.json_schema(), sort_keys=True), _code(evolve)]
    for event in sorted(events, key=lambda e: e.message_type()):
        name = event.message_type()
        parts.append(f"{name} v{event.SCHEMA_VERSION}")
        parts += [
            _code(upcasting.UPCASTERS[(name, version)])
            for version in range(1, event.SCHEMA_VERSION)
            if (name, version) in upcasting.UPCASTERS
        ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _code(function: Callable[..., Any]) -> str:
    try:
        return inspect.getsource(function)
    except OSError:  # no source shipped: its bytecode stands in for it
        return function.__code__.co_code.hex()


class Snapshots(Generic[S]):
    """The snapshot policy of one aggregate, and the snapshots it waits to write."""

    def __init__(
        self,
        initial: S,
        evolve: Callable[[S, Any], S],
        events: Iterable[type[Message]],
        *,
        every: int,
    ) -> None:
        if every < 1:
            raise ValueError(f"a snapshot every {every} events: give 1 or more")
        self.every = every
        self._adapter: TypeAdapter[S] = TypeAdapter(type(initial))
        self.fingerprint = fingerprint_of(self._adapter, evolve, events)
        # Stream id -> (version, state) to save; a newer one replaces an older one.
        self._due: dict[str, tuple[int, S]] = {}
        self._wake = asyncio.Event()
        self.written = 0

    def after_write(self, stream_id: str, before: int, after: int, state: S) -> None:
        """A write carried `stream_id` from version `before` to `after`."""
        if before // self.every < after // self.every:
            self._take(stream_id, after, state)

    def after_load(self, stream_id: str, folded: int, version: int, state: S) -> None:
        """A load folded `folded` events to reach `version`."""
        if folded >= self.every:
            self._take(stream_id, version, state)

    def _take(self, stream_id: str, version: int, state: S) -> None:
        # Only remembered here (states are immutable); turned into JSON by the writer.
        known = self._due.get(stream_id)
        if known is None or known[0] < version:
            self._due[stream_id] = (version, state)
            self._wake.set()

    def row(self, stream_id: str, version: int, state: S) -> SnapshotRow:
        text = self._adapter.dump_json(state).decode()
        return SnapshotRow(
            stream_id,
            version,
            self.fingerprint,
            text,
            checksum(stream_id, version, self.fingerprint, text),
        )

    def restore(self, row: SnapshotRow) -> S | None:
        """The state a snapshot row holds, or None (with a log line) if it cannot be trusted."""
        if row.fingerprint != self.fingerprint:
            log.info(
                "snapshot of %s at version %d ignored: taken by other code (fingerprint %.12s,"
                " this code's is %.12s); folding the stream from its start",
                row.stream_id,
                row.version,
                row.fingerprint,
                self.fingerprint,
            )
            return None
        if row.checksum != checksum(row.stream_id, row.version, row.fingerprint, row.state):
            log.warning(
                "snapshot of %s at version %d ignored: its checksum does not match (the row"
                " was changed outside the service); folding the stream from its start",
                row.stream_id,
                row.version,
            )
            return None
        try:
            state = self._adapter.validate_json(row.state)
        except ValidationError as error:
            problem = error.errors(include_url=False)[0]["msg"]
        else:
            # Missing fields would take their defaults and extra ones be dropped: only a state
            # that gives back the very text stored is the one this code wrote.
            if self._adapter.dump_json(state).decode() == row.state:
                return state
            problem = "it is not in the shape this code writes"
        log.warning(
            "snapshot of %s at version %d ignored: it does not deserialize (%s); folding"
            " the stream from its start",
            row.stream_id,
            row.version,
            problem,
        )
        return None

    async def write_forever(self, storage: SnapshotStorage) -> None:
        """Save the snapshots taken, as they come (the service's background task)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            due, self._due = self._due, {}
            try:
                rows = [self.row(stream_id, v, state) for stream_id, (v, state) in due.items()]
                await storage.write_snapshots(rows)
            except Exception:
                # Nothing is lost: the events are the truth, and a later write takes another.
                log.warning("%d snapshots not written", len(due), exc_info=True)
                continue
            self.written += len(due)


class SnapshotStorage(Protocol):
    """Where snapshots are kept (the `Storage` of unit_of_work.py is one)."""

    async def read_from_snapshots(
        self, stream_ids: Collection[str], fingerprint: str
    ) -> dict[str, tuple[SnapshotRow | None, list[Envelope]]]: ...

    async def write_snapshots(self, rows: Sequence[SnapshotRow]) -> None: ...


# Each stream's snapshot (whichever code took it), then its events: those after the snapshot
# if it has this code's fingerprint ($2), else all of them. One round trip; `part` puts the
# snapshot first. LATERAL ... ORDER BY version: each stream's events are read as an index range
# from the snapshot's version on. Without the ORDER BY, the planner could not tell how many
# rows `version >` leaves, and scanned a long stream whole to filter it.
READ_FROM_SNAPSHOTS = """
SELECT stream_id, 0 AS part, version, fingerprint, state, checksum, NULL::jsonb AS envelope
  FROM snapshots WHERE stream_id = ANY($1::text[])
UNION ALL
SELECT w.stream_id, 1, e.version, NULL, NULL, NULL, e.envelope
  FROM unnest($1::text[]) AS w(stream_id)
  LEFT JOIN snapshots s ON s.stream_id = w.stream_id AND s.fingerprint = $2
 CROSS JOIN LATERAL (
       SELECT version, envelope FROM events
        WHERE events.stream_id = w.stream_id AND events.version > coalesce(s.version, 0)
        ORDER BY version
       ) e
 ORDER BY stream_id, part, version
"""

# A snapshot replaces an older one, or one of the same version (which a fresh load took
# because that one could not be trusted); never a newer one.
WRITE_SNAPSHOTS = """
INSERT INTO snapshots (stream_id, version, fingerprint, state, checksum)
SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[])
ON CONFLICT (stream_id) DO UPDATE
   SET version = excluded.version, fingerprint = excluded.fingerprint, state = excluded.state,
       checksum = excluded.checksum, taken_at = now()
 WHERE snapshots.version <= excluded.version
"""


async def read_from_snapshots(
    conn: Connection, stream_ids: Collection[str], fingerprint: str
) -> dict[str, tuple[SnapshotRow | None, list[Envelope]]]:
    """For each stream with a snapshot or events: its snapshot, and the events after it (all
    of them if the snapshot is another code's)."""
    found: dict[str, tuple[SnapshotRow | None, list[Envelope]]] = {}
    for row in await conn.fetch(READ_FROM_SNAPSHOTS, list(set(stream_ids)), fingerprint):
        stream_id = row["stream_id"]
        if row["part"] == 0:
            snapshot = SnapshotRow(
                stream_id, row["version"], row["fingerprint"], row["state"], row["checksum"]
            )
            found[stream_id] = (snapshot, [])
        else:
            found.setdefault(stream_id, (None, []))[1].append(
                Envelope.model_validate_json(row["envelope"])
            )
    return found


async def write_snapshots(conn: Connection, rows: Sequence[SnapshotRow]) -> None:
    if rows:
        await conn.execute(
            WRITE_SNAPSHOTS,
            [r.stream_id for r in rows],
            [r.version for r in rows],
            [r.fingerprint for r in rows],
            [r.state for r in rows],
            [r.checksum for r in rows],
        )
