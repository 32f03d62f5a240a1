"""Quick throughput check of the accounts service: deposits/s through Kafka, end to end.

Usage (against `make start`, or any cluster named by the BANK_* variables):
    uv run python -m bench.accounts_throughput --commands 5000 --accounts 50

It starts `python -m bank_accounts` as its own process on fresh topics, opens the accounts,
publishes the deposits as fast as the producer takes them, and times until every outcome is
back on the outcomes topic. Printed figures are for this machine and these settings only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import time
import uuid
from datetime import UTC, datetime

import uvloop
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bank_shared.contracts.accounts import DepositMoney, OpenAccount
from bank_shared.contracts.actors import TELLER
from bank_shared.contracts.envelope import Message, seal, to_bytes
from bank_shared.messaging.kafka import ensure_topics
from bank_shared.settings import KafkaSettings, PostgresSettings
from bank_shared.topics import TopicSettings, account_topics
from bench.cluster import running


def envelope_bytes(command: Message) -> bytes:
    return to_bytes(
        seal(
            command,
            message_id=uuid.uuid4(),
            correlation_id=uuid.uuid4(),
            causation_id=None,
            occurred_at=datetime.now(UTC),
        )
    )


async def count_outcomes(kafka: KafkaSettings, topic: str, expected: int) -> float:
    """Consume the outcomes topic until `expected` records; return the time the last arrived."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap,
        auto_offset_reset="earliest",
        group_id=f"bench-{uuid.uuid4()}",
    )
    await consumer.start()
    seen = 0
    try:
        while seen < expected:
            batch = await consumer.getmany(timeout_ms=60_000)
            if not batch:
                raise SystemExit(f"only {seen} of {expected} outcomes after 60 s of silence")
            seen += sum(len(records) for records in batch.values())
        return time.perf_counter()
    finally:
        await consumer.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=5000)
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--port", type=int, default=8091)
    args = parser.parse_args()

    kafka, pg = KafkaSettings(), PostgresSettings()
    run = uuid.uuid4().hex[:8]
    topics = TopicSettings().prefixed(f"bench.{run}")
    await ensure_topics(kafka, account_topics(topics))
    env = {
        **os.environ,
        "BANK_ACCOUNTS_HTTP_PORT": str(args.port),
        "BANK_ACCOUNTS_CONSUMER_GROUP": f"bench-{run}",
        **{f"BANK_TOPIC_{name.upper()}": str(value) for name, value in topics},
    }
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap, enable_idempotence=True, linger_ms=5
    )
    async with running({"accounts"}, env, run):
        started, finished = await measure(args, kafka, topics, producer, run)
    report(args, kafka, pg, topics, started, finished)


async def measure(
    args: argparse.Namespace,
    kafka: KafkaSettings,
    topics: TopicSettings,
    producer: AIOKafkaProducer,
    run: str,
) -> tuple[float, float]:
    """Open the accounts, then send the deposits; return when they started and finished."""
    try:
        await producer.start()
        accounts = [f"bench-{run}-{i}" for i in range(args.accounts)]
        for account in accounts:
            await producer.send(
                topics.account_commands,
                key=account.encode(),
                value=envelope_bytes(OpenAccount(account_id=account, owner="B", owned_by=TELLER)),
            )
        await producer.flush()
        await count_outcomes(kafka, topics.command_outcomes, args.accounts)

        counter = asyncio.create_task(
            count_outcomes(kafka, topics.command_outcomes, args.accounts + args.commands)
        )
        started = time.perf_counter()
        for i in range(args.commands):
            account = accounts[i % len(accounts)]
            await producer.send(
                topics.account_commands,
                key=account.encode(),
                value=envelope_bytes(DepositMoney(account_id=account, amount="1")),
            )
        await producer.flush()
        finished = await counter
    finally:
        await producer.stop()
    return started, finished


def report(
    args: argparse.Namespace,
    kafka: KafkaSettings,
    pg: PostgresSettings,
    topics: TopicSettings,
    started: float,
    finished: float,
) -> None:
    seconds = finished - started
    print(f"machine: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}")
    print(
        f"postgres {pg.host}:{pg.port}, kafka {kafka.bootstrap}, one accounts process, "
        f"{args.accounts} accounts, {topics.partitions} partitions"
    )
    print(
        f"{args.commands} deposits in {seconds:.2f} s: {args.commands / seconds:.0f} commands/s "
        "(publish -> outcome on Kafka, end to end)"
    )


if __name__ == "__main__":
    uvloop.run(main())
