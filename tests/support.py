"""Test helpers: send commands as the command API will, and watch topics as a client would."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bank_shared.contracts.envelope import Envelope, Message, open_envelope, seal, to_bytes
from bank_shared.settings import KafkaSettings


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def envelope_for(command: Message, *, command_id: uuid.UUID | None = None) -> Envelope:
    return seal(
        command,
        message_id=command_id or uuid.uuid4(),
        correlation_id=uuid.uuid4(),
        causation_id=None,
        occurred_at=datetime.now(UTC),
    )


async def send(producer: AIOKafkaProducer, topic: str, key: str, value: Envelope | bytes) -> None:
    raw = to_bytes(value) if isinstance(value, Envelope) else value
    await producer.send_and_wait(topic, value=raw, key=key.encode())


@dataclass(frozen=True)
class Record:
    key: str | None
    value: bytes
    headers: dict[str, bytes]
    partition: int
    offset: int

    @property
    def envelope(self) -> Envelope:
        return open_envelope(self.value)[0]

    @property
    def message(self) -> Message:
        return open_envelope(self.value)[1]


@dataclass
class TopicTap:
    """Reads a whole topic (every partition, from the beginning) into `records`, in the
    background, so a test can wait for what it expects instead of sleeping."""

    kafka: KafkaSettings
    topic: str
    records: list[Record] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def start(self) -> TopicTap:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.kafka.bootstrap,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await consumer.start()
        partitions = await partitions_of(consumer, self.topic)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        self._task = asyncio.create_task(self._read(consumer))
        return self

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                for messages in batch.values():
                    self.records.extend(
                        Record(
                            key=m.key.decode() if m.key else None,
                            value=m.value or b"",
                            headers=dict(m.headers),
                            partition=m.partition,
                            offset=m.offset,
                        )
                        for m in messages
                    )
        finally:
            await consumer.stop()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def matching(self, predicate: Callable[[Record], bool]) -> list[Record]:
        return [r for r in list(self.records) if predicate(r)]

    async def wait_for(
        self, predicate: Callable[[Record], bool], *, count: int = 1, within: float = 30
    ) -> list[Record]:
        """Wait until at least `count` records match; return the matching ones."""
        deadline = time.monotonic() + within
        while True:
            found = self.matching(predicate)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(found)} of {count} expected records on {self.topic} after {within}s"
                )
            await asyncio.sleep(0.05)


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The topic's partitions, once the client's metadata knows the topic (it may be new)."""
    deadline = time.monotonic() + 30
    while True:
        found = consumer.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in sorted(found)]
        if time.monotonic() > deadline:
            raise AssertionError(f"topic {topic} does not exist")
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)


def caused_by(command_id: uuid.UUID) -> Callable[[Record], bool]:
    def predicate(record: Record) -> bool:
        try:
            return record.envelope.causation_id == command_id
        except ValueError:
            return False

    return predicate


def keyed(key: str) -> Callable[[Record], bool]:
    return lambda record: record.key == key


async def eventually(check: Callable[[], Any], *, within: float = 30, what: str = "") -> None:
    """Poll an async or sync check until it returns truthy."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what or check}")
        await asyncio.sleep(0.05)


async def records_in_topic(kafka: KafkaSettings, topic: str) -> int:
    """How many records the topic holds (sum of its partitions' end offsets)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap)
    await consumer.start()
    try:
        partitions = await partitions_of(consumer, topic)
        offsets = await consumer.end_offsets(partitions)
        return sum(offsets.values())
    finally:
        # aiokafka's stop() awaits an internal task that must have started once (else it
        # raises CancelledError): give it that one turn of the loop.
        await asyncio.sleep(0)
        await consumer.stop()
