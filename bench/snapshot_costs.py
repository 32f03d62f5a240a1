"""What snapshots buy and what they cost (docs/performance.md, "Snapshots").

Usage (against `make start`, or any PostgreSQL named by the BANK_PG_* variables; the write-path
part starts the services as `make bench` does):
    uv run python -m bench.snapshot_costs --events 100000 --loads 200 --pairs 3

1. Loads: one account with `--events` events, written into a scratch database; then the
   accounts service's own load (`EventStore.read`, nothing kept in memory) timed `--loads`
   times without snapshots (the whole stream folded) and with one (a snapshot 100 events
   behind the head, one more than the default policy leaves, and the events after it).
2. The write path: the same steady transfer rate (`--rate`) run with snapshots on (the default
   policy) and off, alternating, `--pairs` times; CPU ms per transfer of each process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import uvloop

from bank_accounts.account import BANK_ACCOUNT, AccountState, decide
from bank_shared.contracts.accounts import AccountCommand, DepositMoney, OpenAccount
from bank_shared.contracts.actors import BANK_TELLER, TELLER
from bank_shared.contracts.envelope import Envelope, Message, seal_events
from bank_shared.db import create_pool
from bank_shared.eventstore.migrate import migrate
from bank_shared.eventstore.store import Changes, PostgresStorage
from bank_shared.eventstore.unit_of_work import EventStore
from bank_shared.service import EVENT_STORE
from bank_shared.settings import PostgresSettings
from bank_shared.topics import TopicSettings
from bench import report
from bench.openloop import LoadShape, Workload, percentile, run_step
from bench.scratch import scratch_bank
from bench.suite import INITIAL_BALANCE
from bench.systems.ours import our_bank

ACCOUNT = "long-lived"
# The default policy of the services (BANK_ACCOUNTS_SNAPSHOT_EVERY).
EVERY = 100
WRITE_BATCH = 5_000


@dataclass(frozen=True)
class Pooled:
    pool: asyncpg.Pool  # the event store's connections, as a service's Platform holds them


def history(events: int) -> list[Envelope]:
    """An account opened, then deposits: `events` events, decided as the service decides."""
    envelopes: list[Envelope] = []
    state = BANK_ACCOUNT.initial
    commands: list[AccountCommand] = [OpenAccount(account_id=ACCOUNT, owner="Ada", owned_by=TELLER)]
    commands += [DepositMoney(account_id=ACCOUNT, amount="1.00") for _ in range(events - 1)]
    for version, command in enumerate(commands):
        decided = decide(command, state, BANK_TELLER)
        assert isinstance(decided, list)
        changes: Sequence[Message] = decided
        envelopes += seal_events(
            changes,
            cause=uuid.uuid4(),
            correlation_id=uuid.uuid4(),
            stream_id=ACCOUNT,
            after_version=version,
            occurred_at=datetime.now(UTC),
        )
        for event in changes:
            state = BANK_ACCOUNT.evolve(state, event)
    return envelopes


async def timed(load: Callable[[], Awaitable[object]], times: int) -> dict[str, float]:
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        await load()
        samples.append((time.perf_counter() - started) * 1000)
    ordered = sorted(samples)
    return {
        "loads": times,
        "p50_ms": round(percentile(ordered, 0.50), 2),
        "p99_ms": round(percentile(ordered, 0.99), 2),
        "mean_ms": round(statistics.fmean(ordered), 2),
    }


async def measure_loads(base: PostgresSettings, events: int, loads: int) -> dict[str, Any]:
    async with scratch_bank(base, f"snapshots_{uuid.uuid4().hex[:8]}") as pg:
        pool = await create_pool(pg.dsn(pg.accounts_db), size=2)
        try:
            async with pool.acquire() as conn:
                await migrate(conn, EVENT_STORE)
            storage = PostgresStorage(Pooled(pool))
            envelopes = history(events)
            for start in range(0, len(envelopes), WRITE_BATCH):
                await storage.write(Changes(events=envelopes[start : start + WRITE_BATCH]))
            async with pool.acquire() as conn:
                # The statistics autovacuum gathers soon after: the planner then knows this
                # one stream is the whole table, the case where a bad plan reads all of it.
                await conn.execute("ANALYZE events")
            topics = TopicSettings()

            def store(every: int) -> EventStore[AccountState]:
                return EventStore(
                    storage, BANK_ACCOUNT, topics, events_topic="-", known=0, snapshot_every=every
                )

            plain = store(0)
            full = (await plain.read([ACCOUNT]))[ACCOUNT]
            without = await timed(lambda: plain.read([ACCOUNT]), max(3, loads // 20))

            # The snapshot as the policy takes it, 100 events behind the head.
            snapshotted = store(EVERY)
            assert snapshotted.snapshots is not None
            behind = BANK_ACCOUNT.fold(envelopes[: events - EVERY])
            row = snapshotted.snapshots.row(ACCOUNT, events - EVERY, behind)
            await storage.write_snapshots([row])
            loaded = (await snapshotted.read([ACCOUNT]))[ACCOUNT]
            if loaded != full:
                raise SystemExit(f"a load from a snapshot gave {loaded}, the full fold {full}")
            with_snapshot = await timed(lambda: snapshotted.read([ACCOUNT]), loads)
        finally:
            await pool.close()
    return {
        "events": events,
        "snapshot_behind_head": EVERY,
        "without_snapshots": without,
        "with_snapshot": with_snapshot,
    }


async def measure_write_path(
    base: PostgresSettings, pairs: int, rate: float, accounts: int, shape: LoadShape
) -> dict[str, Any]:
    """The same rate with snapshots on (every EVERY events) and off, alternating."""
    runs: list[dict[str, Any]] = []
    for pair in range(pairs):
        for every in (EVERY, 0):
            os.environ["BANK_ACCOUNTS_SNAPSHOT_EVERY"] = str(every)
            os.environ["BANK_SAGA_SNAPSHOT_EVERY"] = str(every)
            async with our_bank(base, accounts, INITIAL_BALANCE) as (bank, ids):
                step = await run_step(bank, rate, Workload(ids).pairs(), shape)
                written = await snapshot_rows(bank.pg)
            runs.append(
                {
                    "pair": pair + 1,
                    "snapshot_every": every,
                    "achieved_per_s": round(step.achieved_per_s, 1),
                    "sustained": step.sustained,
                    "snapshots_in_store": written,
                    "cpu_ms_per_transfer": {
                        k: round(v, 3) for k, v in step.cpu_ms_per_transfer.items()
                    },
                }
            )
    return {"rate_per_s": rate, "accounts": accounts, "window_s": shape.window, "runs": runs}


async def snapshot_rows(pg: PostgresSettings) -> int:
    conn = await asyncpg.connect(pg.dsn(pg.accounts_db))
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM snapshots")
        return count
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--loads", type=int, default=200, help="timed loads with a snapshot")
    parser.add_argument("--pairs", type=int, default=3, help="on/off pairs (0: loads only)")
    parser.add_argument("--rate", type=float, default=100, help="transfers/s of each run")
    parser.add_argument("--accounts", type=int, default=20, help="accounts of each run")
    parser.add_argument("--window", type=float, default=30, help="steady window, seconds")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = parser.parse_args()

    pg = PostgresSettings()
    result: dict[str, Any] = {"loads": await measure_loads(pg, args.events, args.loads)}
    if args.pairs:
        shape = LoadShape(window=args.window, warm_up=0.0, refine=0)
        result["write_path"] = await measure_write_path(
            pg, args.pairs, args.rate, args.accounts, shape
        )
    if args.json:
        print(json.dumps(result))
        return
    print(f"machine: {platform.node()}, {os.cpu_count()} cores; PostgreSQL {pg.host}:{pg.port}")
    print("\n".join(report.snapshot_lines(result)))


if __name__ == "__main__":
    uvloop.run(main())
