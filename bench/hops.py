"""Where a transfer's time goes: each hop's delay, read from a run's stores and topics.

`uv run python -m bench.steady_rate --rate 100 --window 20 --hops` prints it. Before the
scratch databases go, it reads when each step of each transfer was written: the command API's
command row, then the saga's and the accounts service's events (`recorded_at`, the time of the
statement that wrote them). Each hop is one Kafka trip plus one decision: the outbox row
relayed, the record fetched by the next service, its batch decided and written. The relay's
share is from each outbox row's write to its record's timestamp (set by the relay's producer).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from bank_shared.settings import KafkaSettings, PostgresSettings
from bank_shared.topics import TopicSpec, transfer_topics
from bench.openloop import latency_summary
from bench.systems.ours import OurBank

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


async def hop_report(bank: OurBank, kafka: KafkaSettings) -> str:
    """Each hop's delay and the relay's share of it, as a table, from the run's stores and
    topics (read before they go)."""
    hops = hop_delays(await step_times(bank.pg))
    sending = [t for t in transfer_topics(bank.topics) if t.name != bank.topics.dead_letters]
    relayed = relay_delays(await outbox_times(bank.pg), await kafka_times(kafka, sending))
    lines = [f"{'hop':40} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}"]
    for name, delays in hops:
        summary = latency_summary(delays)
        lines.append(f"{name:40} {summary['p50']:8.1f} {summary['p90']:8.1f} {summary['p99']:8.1f}")
    lines.append("of which the relay, outbox row written -> record sent to Kafka:")
    for topic, delays in sorted(relayed.items()):
        summary = latency_summary(delays)
        lines.append(
            f"  {topic:38} {summary['p50']:8.1f} {summary['p90']:8.1f} {summary['p99']:8.1f}"
        )
    return "\n".join(lines)
