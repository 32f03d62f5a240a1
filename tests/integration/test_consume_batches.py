"""Consuming batches on a real broker: a batch that fails while it spans several partitions
comes again whole, on every partition, and nothing of it is committed past."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from faststream.kafka import KafkaBroker

from bank_deploy.providers import Endpoints
from bank_shared.contracts.accounts import DepositMoney
from bank_shared.contracts.envelope import Message, to_bytes
from bank_shared.messaging.consume import Batch, BatchConsumer, subscribe
from bank_shared.messaging.kafka import ensure_topics
from bank_shared.topics import TopicSpec
from tests.support import envelope_for, eventually

pytestmark = pytest.mark.integration

PER_PARTITION = 20


class FailsOnceSpanningPartitions:
    """A handler that fails, as a lost database connection would, every batch until one spans
    two partitions, fails that one too, then applies everything."""

    def __init__(self, partition_of: dict[uuid.UUID, int]) -> None:
        self.partition_of = partition_of
        self.failed_spanning: set[int] | None = None
        self.applied: set[uuid.UUID] = set()

    async def __call__(self, batch: Batch[Message]) -> None:
        if self.failed_spanning is None:
            partitions = {self.partition_of[e.message_id] for e, _ in batch}
            if len(partitions) > 1:
                self.failed_spanning = partitions
            raise ConnectionResetError("simulated: connection to PostgreSQL lost")
        self.applied.update(e.message_id for e, _ in batch)


@pytest.fixture
async def topic(infra: Endpoints) -> str:
    name = f"test.consume.{uuid.uuid4().hex[:8]}"
    await ensure_topics(infra.kafka, [TopicSpec(name, 3)])
    return name


async def committed(infra: Endpoints, group: str, topic: str) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=infra.kafka.bootstrap, group_id=group)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in (0, 1)}
    finally:
        await consumer.stop()


@pytest.fixture
async def produced(
    infra: Endpoints, producer: AIOKafkaProducer, topic: str
) -> dict[uuid.UUID, int]:
    """PER_PARTITION commands on each of partitions 0 and 1, written before anyone consumes,
    so that a fetch finds both partitions' records at once."""
    partition_of: dict[uuid.UUID, int] = {}
    for n in range(PER_PARTITION):
        for partition in (0, 1):
            envelope = envelope_for(DepositMoney(account_id=f"acc-{partition}", amount=n + 1))
            await producer.send_and_wait(topic, to_bytes(envelope), partition=partition)
            partition_of[envelope.message_id] = partition
    return partition_of


async def test_a_batch_failing_across_two_partitions_is_redelivered_on_both(
    infra: Endpoints, topic: str, produced: dict[uuid.UUID, int]
) -> None:
    handler = FailsOnceSpanningPartitions(produced)
    group = f"test-consume-{uuid.uuid4().hex[:8]}"
    consumer = BatchConsumer(handler, (DepositMoney,), dead_letters=None)
    broker = KafkaBroker(infra.kafka.bootstrap)
    subscribe(broker, consumer, topic, group_id=group, title="test")
    await broker.start()
    try:
        await eventually(lambda: handler.applied == set(produced), what="every record applied")
    finally:
        await consumer.stop()
        await broker.stop()
    assert handler.failed_spanning == {0, 1}
    # The stop commits what was applied: each partition's offset is past its last record.
    assert await committed(infra, group, topic) == {0: PER_PARTITION, 1: PER_PARTITION}
