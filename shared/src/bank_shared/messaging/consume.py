"""Consuming a batch at least once: handle each record, dead-letter the unreadable, and commit
Kafka offsets only after every effect of the batch is committed in PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord
from faststream.kafka import KafkaMessage

from bank_shared.contracts.envelope import Envelope, Message, UnreadableMessageError, open_envelope

log = logging.getLogger(__name__)

# Receives the readable messages of one Kafka batch, in order; returns once their effects
# are committed.
BatchHandler = Callable[[list[tuple[Envelope, Message]]], Awaitable[None]]


class DeadLetters:
    """Where records that can never be processed go, with the reason and where they came from."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic

    async def send(self, record: ConsumerRecord[Any, Any], reason: str) -> None:
        log.warning(
            "dead-lettering %s[%s]@%s: %s", record.topic, record.partition, record.offset, reason
        )
        headers = [
            ("dead-letter-reason", reason[:2000].encode()),
            ("source-topic", record.topic.encode()),
            ("source-partition", str(record.partition).encode()),
            ("source-offset", str(record.offset).encode()),
        ]
        await self.producer.send_and_wait(
            self.topic, value=record.value or b"", key=record.key, headers=headers
        )


def batch_records(message: KafkaMessage) -> Sequence[ConsumerRecord[Any, Any]]:
    raw = message.raw_message
    return raw if isinstance(raw, tuple) else (raw,)


async def consume_batch(
    message: KafkaMessage,
    handle: BatchHandler,
    dead_letters: DeadLetters,
    *,
    accepts: Callable[[Message], bool] = lambda _: True,
    failure_backoff: float = 0.5,
) -> int:
    """Process a FastStream batch (subscriber with `batch=True, ack_policy=AckPolicy.MANUAL`).

    Unreadable records go to the dead-letter topic first (at least once: a redelivered batch
    sends them again). On success the offsets are committed (ack). On any failure the
    consumer is rewound to the first record of the batch (nack) and the error propagates: the
    whole batch comes again, and what was already applied is recognised by its message id.
    """
    records = batch_records(message)
    try:
        readable: list[tuple[Envelope, Message]] = []
        for record in records:
            try:
                envelope, payload = open_envelope(record.value)
                if not accepts(payload):
                    raise UnreadableMessageError(
                        f"{envelope.type} does not belong on topic {record.topic}"
                    )
            except UnreadableMessageError as error:
                await dead_letters.send(record, str(error))
                continue
            readable.append((envelope, payload))
        if readable:
            await handle(readable)
    except Exception:
        await message.nack()
        # Pause before the batch comes again: a database that is down is not back in 1 ms.
        await asyncio.sleep(failure_backoff)
        raise
    except BaseException:
        await message.nack()
        raise
    await message.ack()
    return len(records)
