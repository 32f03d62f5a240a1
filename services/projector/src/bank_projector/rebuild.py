"""`python -m bank_projector.rebuild` (make rebuild-read-model): empty the read tables and
replay the whole history from the event stores, while the rest of the system runs.

Why the event stores and not the topics: they are the source of truth (the topics are what
the relays copied from them), one consistent snapshot of each can be read in a single query,
and a sequential scan of PostgreSQL is the fastest history there is.

Consistency with the live projector: the read tables are locked (ACCESS EXCLUSIVE) and
emptied before the stores are read, in the same transaction as the replay. Every event the
projector had applied was committed in its store before that, so the replay contains it;
every event committed after waits, in Kafka, for the projector, which resumes after the
rebuild commits and skips what the replay already applied. Readers wait during the rebuild.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import time
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
import uvloop

from bank_projector.projections import project
from bank_projector.settings import ProjectorSettings
from bank_shared.contracts.envelope import Envelope, read_payload
from bank_shared.db import Connection
from bank_shared.eventstore.migrate import migrate
from bank_shared.eventstore.store import check_stored_versions
from bank_shared.settings import PostgresSettings

READ_TABLES = "accounts, account_activity, transfers, parked_streams"


@dataclass(frozen=True)
class RebuildReport:
    events: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


# How many allocations between young-generation collections during a replay (Python's default
# is 700).
REPLAY_GC_THRESHOLD = 20_000


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Run the cyclic garbage collector rarely, and never over the objects made before.

    Why: a replay makes and drops millions of objects a batch at a time, which reference
    counting frees; but the collector kept scanning the young ones, and its older generations
    kept rescanning everything that survived a batch. With the imports' heap frozen and a
    higher threshold, a rebuild ran about a fifth faster (docs/performance.md). Only during
    the rebuild: in a long-running service the collector's passes cost little."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(REPLAY_GC_THRESHOLD, threshold[1], threshold[2])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


async def replay(read: Connection, source_dsn: str, batch: int) -> int:
    source = await asyncpg.connect(source_dsn)
    try:
        # One snapshot of the store; a server-side cursor streams it in batches.
        async with source.transaction(isolation="repeatable_read", readonly=True):
            if await source.fetchval("SELECT to_regclass('events')") is None:
                return 0  # its service never started: a store not yet created has no history
            cursor = await source.cursor("SELECT envelope FROM events ORDER BY global_position")
            replayed = 0
            # Three things at once instead of taking turns: the store reads the next batch,
            # the read database writes the previous one, and this process parses this one.
            # A batch is projected only after the previous one is written (it reads its rows).
            ahead = asyncio.ensure_future(cursor.fetch(batch))
            writing: asyncio.Future[int] | None = None
            try:
                while rows := await ahead:
                    ahead = asyncio.ensure_future(cursor.fetch(batch))
                    envelopes = [Envelope.model_validate_json(r["envelope"]) for r in rows]
                    events = [(e, read_payload(e)) for e in envelopes]
                    if writing is not None:
                        replayed += await writing
                    writing = asyncio.ensure_future(project(read, events))
                if writing is not None:
                    replayed += await writing
            finally:
                ahead.cancel()
                if writing is not None and not writing.done():
                    # Failing part-way: the write in flight ends first, so the connection is
                    # free for the ROLLBACK that undoes the whole rebuild.
                    await asyncio.gather(writing, return_exceptions=True)
            return replayed
    finally:
        await source.close()


async def check_sources(pg: PostgresSettings) -> None:
    """Refuse to rebuild (UnreadableStoreError) if a store holds an event this code cannot
    read: checked before the read tables are locked or emptied."""
    for source in (pg.accounts_db, pg.transfers_db):
        conn = await asyncpg.connect(pg.dsn(source))
        try:
            if await conn.fetchval("SELECT to_regclass('events')") is not None:
                await check_stored_versions(conn, "the rebuild")
        finally:
            await conn.close()


async def rebuild(settings: ProjectorSettings) -> RebuildReport:
    pg = settings.pg
    started = time.perf_counter()
    await check_sources(pg)
    read = await asyncpg.connect(settings.dsn)
    try:
        await migrate(read, "bank_projector.migrations")
        with fewer_collections():
            async with read.transaction():
                await read.execute(f"LOCK TABLE {READ_TABLES} IN ACCESS EXCLUSIVE MODE")
                await read.execute(f"TRUNCATE {READ_TABLES}")
                events = 0
                for source in (pg.accounts_db, pg.transfers_db):
                    events += await replay(read, pg.dsn(source), settings.rebuild_batch)
    finally:
        await read.close()
    return RebuildReport(events=events, seconds=time.perf_counter() - started)


def main() -> None:
    argparse.ArgumentParser(
        prog="python -m bank_projector.rebuild", description=__doc__
    ).parse_args()
    report = uvloop.run(rebuild(ProjectorSettings()))
    print(
        f"read model rebuilt: {report.events} events replayed in {report.seconds:.2f} s"
        f" ({report.events_per_second:,.0f} events/s)"
    )


if __name__ == "__main__":
    main()
