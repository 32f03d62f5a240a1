"""Projection lag: from an account event's commit to its row being visible in the read model.

Usage (against `make start`, or any cluster named by the BANK_* variables):
    uv run python -m bench.projection_lag --rate 200 --seconds 15

It starts the accounts service and the projector as their own processes, on fresh topics and
scratch databases, sends deposits to Kafka at a fixed rate, and listens to the read model's
notifications: each new activity row's lag is the moment it became visible minus the event's
`occurred_at` (stamped by the accounts service just before its commit). Printed figures are for
this machine and these settings only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
import uuid
from datetime import UTC, datetime

import asyncpg
import uvloop
from aiokafka import AIOKafkaProducer

from bank_deploy.postgres import create_databases
from bank_shared.channels import READ_MODEL_CHANNEL
from bank_shared.contracts.accounts import DepositMoney, OpenAccount
from bank_shared.contracts.actors import TELLER
from bank_shared.contracts.envelope import Message, seal, to_bytes
from bank_shared.settings import KafkaSettings, PostgresSettings
from bank_shared.topics import TopicSettings
from bench.cluster import running


def command(message: Message) -> bytes:
    return to_bytes(
        seal(
            message,
            message_id=uuid.uuid4(),
            correlation_id=uuid.uuid4(),
            causation_id=None,
            occurred_at=datetime.now(UTC),
        )
    )


class Visibility:
    """Records when each activity row was first seen, woken by the projector's NOTIFY."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.lags: dict[tuple[str, int], float] = {}
        self.wake = asyncio.Event()

    def notified(self, *_: object) -> None:
        self.wake.set()

    async def watch(self) -> None:
        await self.conn.add_listener(READ_MODEL_CHANNEL, self.notified)
        while True:
            await self.wake.wait()
            self.wake.clear()
            seen_at = time.time()
            for row in await self.conn.fetch(
                "SELECT account_id, version, occurred_at FROM account_activity"
                " WHERE type = 'MoneyDeposited'"
            ):
                key = (row["account_id"], row["version"])
                if key not in self.lags:
                    self.lags[key] = seen_at - row["occurred_at"].timestamp()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200, help="deposits per second")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--accounts", type=int, default=100)
    args = parser.parse_args()

    kafka, run = KafkaSettings(), uuid.uuid4().hex[:8]
    pg = PostgresSettings().model_copy(
        update={name: f"lag_{name}_{run}" for name in ("accounts_db", "transfers_db", "read_db")}
    )
    await create_databases(pg)
    topics = TopicSettings().prefixed(f"bench.{run}")
    env = {
        **os.environ,
        **{f"BANK_TOPIC_{n.upper()}": str(v) for n, v in topics},
        **{f"BANK_PG_{n.upper()}": str(v) for n, v in pg},
        "BANK_ACCOUNTS_CONSUMER_GROUP": f"bench-{run}-accounts",
        "BANK_PROJECTOR_ACCOUNTS_GROUP": f"bench-{run}-projector-accounts",
        "BANK_PROJECTOR_TRANSFERS_GROUP": f"bench-{run}-projector-transfers",
    }
    env |= {"BANK_ACCOUNTS_HTTP_PORT": "8291", "BANK_PROJECTOR_HTTP_PORT": "8292"}
    async with running({"accounts", "projector"}, env, run):
        sent, lags = await measure(args, kafka, pg, topics)
    conn = await asyncpg.connect(pg.dsn("postgres"))
    for database in (pg.accounts_db, pg.transfers_db, pg.read_db):
        await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    await conn.close()
    report(args, sent, lags)


async def measure(
    args: argparse.Namespace, kafka: KafkaSettings, pg: PostgresSettings, topics: TopicSettings
) -> tuple[int, list[float]]:
    """Send deposits on schedule; return how many, and each visible row's lag in ms."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, enable_idempotence=True)
    await producer.start()
    read = await asyncpg.connect(pg.dsn(pg.read_db))
    visibility = Visibility(read)
    watcher = asyncio.create_task(visibility.watch())
    sent = 0
    try:
        accounts = [f"lag-{i}" for i in range(args.accounts)]
        for account in accounts:
            await producer.send(
                topics.account_commands,
                key=account.encode(),
                value=command(OpenAccount(account_id=account, owner="Lag", owned_by=TELLER)),
            )
        await producer.flush()
        # Open loop: each deposit leaves at its scheduled time, whatever the system does.
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < args.seconds:
            due = int(elapsed * args.rate)
            while sent < due:
                account = accounts[sent % len(accounts)]
                await producer.send(
                    topics.account_commands,
                    key=account.encode(),
                    value=command(DepositMoney(account_id=account, amount="1")),
                )
                sent += 1
            await asyncio.sleep(0.002)
        await producer.flush()
        for _ in range(600):  # at most 60 s for the tail to become visible
            if len(visibility.lags) >= sent:
                break
            await asyncio.sleep(0.1)
    finally:
        watcher.cancel()
        await producer.stop()
        await read.close()
    return sent, sorted(value * 1000 for value in visibility.lags.values())


def report(args: argparse.Namespace, sent: int, lags: list[float]) -> None:
    print(
        f"machine: {platform.node()}, {os.cpu_count()} cores; accounts service + projector,"
        f" one process each; fsync on"
    )
    print(
        f"{len(lags)} of {sent} deposits visible; offered {args.rate:.0f}/s for"
        f" {args.seconds:.0f} s: commit -> visible in the read model p50"
        f" {statistics.median(lags):.1f} ms, p99 {lags[int(0.99 * (len(lags) - 1))]:.1f} ms,"
        f" max {lags[-1]:.1f} ms"
    )


if __name__ == "__main__":
    uvloop.run(main())
