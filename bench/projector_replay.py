"""Replay speed of a read-model rebuild: events/s from the event stores into the read tables.

Usage (against `make start`, or any PostgreSQL named by the BANK_PG_* variables):
    uv run python -m bench.projector_replay --accounts 1000 --deposits 100

It writes a history into scratch databases of its own (accounts opened, then deposits,
through the accounts service's handler, no Kafka needed), then times
`bank_projector.rebuild` over it, and drops the scratch databases.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import uvloop

from bank_accounts.account import BANK_ACCOUNT
from bank_accounts.handlers import on_account_commands
from bank_projector.rebuild import rebuild
from bank_projector.settings import ProjectorSettings
from bank_shared.contracts.accounts import AccountCommand, DepositMoney, OpenAccount
from bank_shared.contracts.actors import TELLER
from bank_shared.contracts.envelope import Envelope, seal
from bank_shared.db import create_pool
from bank_shared.eventstore.migrate import migrate
from bank_shared.eventstore.store import PostgresStorage
from bank_shared.eventstore.unit_of_work import EventStore
from bank_shared.service import EVENT_STORE
from bank_shared.settings import PostgresSettings
from bank_shared.topics import TopicSettings
from bench.scratch import scratch_bank


def sealed(command: AccountCommand) -> tuple[Envelope, AccountCommand]:
    envelope = seal(
        command,
        message_id=uuid.uuid4(),
        correlation_id=uuid.uuid4(),
        causation_id=None,
        occurred_at=datetime.now(UTC),
    )
    return envelope, command


@dataclass(frozen=True)
class Pooled:
    pool: asyncpg.Pool  # the event store's connections, as a service's Platform holds them


async def write_history(pg: PostgresSettings, accounts: int, deposits: int) -> int:
    pool = await create_pool(pg.dsn(pg.accounts_db), size=2)
    try:
        async with pool.acquire() as conn:
            await migrate(conn, EVENT_STORE)
        topics = TopicSettings()
        store = EventStore(
            PostgresStorage(Pooled(pool)), BANK_ACCOUNT, topics, events_topic=topics.account_events
        )
        ids = [f"replay-{i}" for i in range(accounts)]
        await on_account_commands(
            store, [sealed(OpenAccount(account_id=a, owner=a, owned_by=TELLER)) for a in ids]
        )
        for _ in range(deposits):
            await on_account_commands(
                store, [sealed(DepositMoney(account_id=a, amount="1.00")) for a in ids]
            )
    finally:
        await pool.close()
    transfers = await asyncpg.connect(pg.dsn(pg.transfers_db))
    try:
        await migrate(transfers, EVENT_STORE)
    finally:
        await transfers.close()
    return accounts * (deposits + 1)


async def measure_replay(base: PostgresSettings, accounts: int, deposits: int) -> dict[str, Any]:
    """Write a history of `accounts * (deposits + 1)` events into scratch databases, time a full
    rebuild of the read model from it, drop the databases."""
    async with scratch_bank(base, f"replay_{uuid.uuid4().hex[:8]}") as pg:
        written_at = time.perf_counter()
        events = await write_history(pg, accounts, deposits)
        written = time.perf_counter() - written_at
        report = await rebuild(ProjectorSettings(pg=pg))
    return {
        "history_events": events,
        "accounts": accounts,
        "history_written_s": round(written, 2),
        "replayed_events": report.events,
        "seconds": round(report.seconds, 3),
        "events_per_s": round(report.events_per_second),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--deposits", type=int, default=100)
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = parser.parse_args()

    pg = PostgresSettings()
    result = await measure_replay(pg, args.accounts, args.deposits)
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"machine: {platform.node()}, {os.cpu_count()} cores; PostgreSQL {pg.host}:{pg.port}"
        " (fsync on)"
    )
    print(
        f"history: {result['history_events']} events in {args.accounts} accounts,"
        f" written in {result['history_written_s']:.1f} s"
    )
    print(
        f"rebuild: {result['replayed_events']} events replayed in {result['seconds']:.2f} s:"
        f" {result['events_per_s']:,.0f} events/s"
    )


if __name__ == "__main__":
    uvloop.run(main())
