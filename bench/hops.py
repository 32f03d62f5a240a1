"""Where a transfer's time goes: one offered rate held, then each hop's delay from the stores.

Usage (starts Kafka and PostgreSQL if they are not running, and leaves them running):
    uv run python -m bench.hops --rate 100 --window 20

Same services, accounts and open-loop schedule as `make bench` (`bench.steady_rate`). Before
the scratch databases go, it reads when each step of each transfer was written: the command
API's command row, then the saga's and the accounts service's events (`recorded_at`, the
time of the statement that wrote them). Each hop is one Kafka trip plus one decision: the
outbox row relayed, the record fetched by the next service, its batch decided and written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Mapping, Sequence
from datetime import datetime

import asyncpg
import uvloop
from aiokafka import AIOKafkaConsumer, TopicPartition

from bank_deploy.cluster import LocalInfra
from bank_shared.settings import KafkaSettings, PostgresSettings
from bank_shared.topics import TopicSpec, transfer_topics
from bench.openloop import LoadShape, Workload, latency_summary, run_step
from bench.suite import INITIAL_BALANCE
from bench.systems.ours import our_bank

# Each step of a completed transfer: which store wrote it, and how to find it there.
STEPS: Sequence[tuple[str, str, str]] = (
    (
        "POST accepted",
        "commands",
        "SELECT stream_id AS id, created_at AS at FROM commands"
        " WHERE command_type = 'StartTransfer'",
    ),
    (
        "TransferStarted",
        "transfers",
        "SELECT stream_id AS id, recorded_at AS at FROM events"
        " WHERE event_type = 'TransferStarted'",
    ),
    (
        "MoneyWithdrawn",
        "accounts",
        "SELECT envelope->'payload'->>'transfer_id' AS id,"
        " recorded_at AS at FROM events WHERE event_type = 'MoneyWithdrawn'",
    ),
    (
        "TransferDebited",
        "transfers",
        "SELECT stream_id AS id, recorded_at AS at FROM events"
        " WHERE event_type = 'TransferDebited'",
    ),
    (
        "MoneyDeposited",
        "accounts",
        "SELECT envelope->'payload'->>'transfer_id' AS id,"
        " recorded_at AS at FROM events WHERE event_type = 'MoneyDeposited'",
    ),
    (
        "TransferCompleted",
        "transfers",
        "SELECT stream_id AS id, recorded_at AS at FROM events"
        " WHERE event_type = 'TransferCompleted'",
    ),
)


async def step_times(pg: PostgresSettings) -> list[dict[str, datetime]]:
    databases = {
        "commands": pg.commands_db,
        "transfers": pg.transfers_db,
        "accounts": pg.accounts_db,
    }
    times: list[dict[str, datetime]] = []
    for _, database, query in STEPS:
        conn = await asyncpg.connect(pg.dsn(databases[database]))
        try:
            times.append({r["id"]: r["at"] for r in await conn.fetch(query) if r["id"]})
        finally:
            await conn.close()
    return times


async def outbox_times(pg: PostgresSettings) -> dict[str, tuple[str, datetime]]:
    """Every outbox row of the three stores that send: message id -> (topic, when written)."""
    rows: dict[str, tuple[str, datetime]] = {}
    for database in (pg.commands_db, pg.transfers_db, pg.accounts_db):
        conn = await asyncpg.connect(pg.dsn(database))
        try:
            for r in await conn.fetch("SELECT message_id, topic, created_at FROM outbox"):
                rows[str(r["message_id"])] = (r["topic"], r["created_at"])
        finally:
            await conn.close()
    return rows


async def kafka_times(kafka: KafkaSettings, topics: Sequence[TopicSpec]) -> dict[str, float]:
    """Message id -> the record's timestamp (set by the relay's producer when it sent it)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(t.name, p) for t in topics for p in range(t.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        times: dict[str, float] = {}
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    if record.value:
                        message_id = json.loads(record.value)["message_id"]
                        times[message_id] = record.timestamp / 1000
        return times
    finally:
        await consumer.stop()


def relay_delays(
    outbox: Mapping[str, tuple[str, datetime]], sent: Mapping[str, float]
) -> dict[str, list[float]]:
    """Per topic, milliseconds from an outbox row's write to its record's send."""
    delays: dict[str, list[float]] = {}
    for message_id, (topic, written) in outbox.items():
        if message_id in sent:
            delays.setdefault(topic, []).append((sent[message_id] - written.timestamp()) * 1000)
    return delays


def hop_delays(times: Sequence[Mapping[str, datetime]]) -> list[tuple[str, list[float]]]:
    """Milliseconds between consecutive steps, for the transfers that went through all."""
    done = set.intersection(*(set(t) for t in times))
    hops = []
    for (before, _, _), (after, _, _), earlier, later in zip(
        STEPS, STEPS[1:], times, times[1:], strict=False
    ):
        delays = [(later[i] - earlier[i]).total_seconds() * 1000 for i in done]
        hops.append((f"{before} -> {after}", delays))
    return hops


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100, help="offered transfers per second")
    parser.add_argument("--window", type=float, default=20, help="steady window, seconds")
    parser.add_argument("--accounts", type=int, default=1000)
    args = parser.parse_args()

    infra = LocalInfra()
    await asyncio.to_thread(infra.start)
    async with our_bank(infra.config.pg, args.accounts, INITIAL_BALANCE) as (bank, ids):
        next_transfer = Workload(ids).pairs()
        step = await run_step(bank, args.rate, next_transfer, LoadShape(window=args.window))
        hops = hop_delays(await step_times(bank.pg))
        outbox = await outbox_times(bank.pg)
        sending = [t for t in transfer_topics(bank.topics) if t.name != bank.topics.dead_letters]
        relayed = relay_delays(outbox, await kafka_times(infra.config.kafka, sending))
    ms = step.latency_ms
    print(
        f"offered {args.rate:g}/s -> achieved {step.achieved_per_s:.1f}/s,"
        f" POST -> completed and projected: p50 {ms['p50']:.1f} ms, p99 {ms['p99']:.1f} ms"
    )
    print(f"{'hop':40} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}")
    for name, delays in hops:
        summary = latency_summary(delays)
        print(f"{name:40} {summary['p50']:8.1f} {summary['p90']:8.1f} {summary['p99']:8.1f}")
    print("of which the relay, outbox row written -> record sent to Kafka:")
    for topic, delays in sorted(relayed.items()):
        summary = latency_summary(delays)
        print(f"  {topic:38} {summary['p50']:8.1f} {summary['p90']:8.1f} {summary['p99']:8.1f}")


if __name__ == "__main__":
    uvloop.run(main())
