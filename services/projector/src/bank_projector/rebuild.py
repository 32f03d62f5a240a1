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
import time
from dataclasses import dataclass

import asyncpg
import uvloop

from bank_projector.projections import project
from bank_projector.settings import ProjectorSettings
from bank_shared.contracts.envelope import Envelope, read_payload
from bank_shared.db import Connection
from bank_shared.eventstore.migrate import migrate

READ_TABLES = "accounts, account_activity, transfers, parked_streams"


@dataclass(frozen=True)
class RebuildReport:
    events: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


async def replay(read: Connection, source_dsn: str, batch: int) -> int:
    source = await asyncpg.connect(source_dsn)
    try:
        # One snapshot of the store; a server-side cursor streams it in batches.
        async with source.transaction(isolation="repeatable_read", readonly=True):
            cursor = await source.cursor("SELECT envelope FROM events ORDER BY global_position")
            replayed = 0
            # The store reads the next batch while this one is parsed and projected: two
            # servers' work overlaps instead of taking turns.
            ahead = asyncio.ensure_future(cursor.fetch(batch))
            try:
                while rows := await ahead:
                    ahead = asyncio.ensure_future(cursor.fetch(batch))
                    envelopes = [Envelope.model_validate_json(r["envelope"]) for r in rows]
                    replayed += await project(read, [(e, read_payload(e)) for e in envelopes])
            finally:
                ahead.cancel()
            return replayed
    finally:
        await source.close()


async def rebuild(settings: ProjectorSettings) -> RebuildReport:
    pg = settings.pg
    started = time.perf_counter()
    read = await asyncpg.connect(settings.dsn)
    try:
        await migrate(read, "bank_projector.migrations")
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
