"""What one relay round costs on Kafka: a transactional round against a plain idempotent send.

Usage (against `make start`, or any broker named by the BANK_KAFKA_* variables):
    uv run python -m bench.kafka_round --rounds 300

Each round sends one record and waits for it: once inside a Kafka transaction (begin, send,
commit: what the outbox relay did until the performance work) and once with an idempotent
producer (what it does now). Printed figures are for this machine and broker only.
"""

from __future__ import annotations

import argparse
import time
import uuid

import uvloop
from aiokafka import AIOKafkaProducer

from bank_shared.messaging.kafka import ensure_topics
from bank_shared.settings import KafkaSettings
from bank_shared.topics import TopicSpec
from bench.openloop import latency_summary


async def rounds(producer: AIOKafkaProducer, topic: str, count: int, *, txn: bool) -> list[float]:
    took = []
    for _ in range(count):
        started = time.perf_counter()
        if txn:
            async with producer.transaction():
                await (await producer.send(topic, b"probe", key=b"probe"))
        else:
            await (await producer.send(topic, b"probe", key=b"probe"))
        took.append((time.perf_counter() - started) * 1000)
    return took


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    kafka = KafkaSettings()
    topic = f"bench.kafka-round.{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka, [TopicSpec(topic, partitions=1)])
    transactional = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap,
        transactional_id=f"bench-{uuid.uuid4().hex}",
        enable_idempotence=True,
        linger_ms=0,
    )
    idempotent = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap, enable_idempotence=True, linger_ms=0
    )
    await transactional.start()
    await idempotent.start()
    try:
        for name, producer, txn in (
            ("transactional round", transactional, True),
            ("idempotent send", idempotent, False),
        ):
            ms = latency_summary(await rounds(producer, topic, args.rounds, txn=txn))
            print(
                f"{name:20s} p50 {ms['p50']:.2f} ms, p90 {ms['p90']:.2f} ms,"
                f" p99 {ms['p99']:.2f} ms ({args.rounds} rounds, one record each)"
            )
    finally:
        await transactional.stop()
        await idempotent.stop()


if __name__ == "__main__":
    uvloop.run(main())
