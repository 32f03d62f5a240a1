"""Consuming a topic at least once, in batches, with FastStream: a batch's Kafka offsets are
committed only after its effects are committed in PostgreSQL, a batch that fails comes again
whole, and a message that can never be processed goes to the dead-letter topic.

The subscriber is a FastStream batch subscriber with manual acknowledgement: FastStream's
automatic one commits offsets before the handler's effects are durable, so a failed message
would be skipped. Every consumer records what it processed in the same transaction as its
effects, so a batch that comes again changes nothing (unit_of_work.py, the projector's versions).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, Protocol, TypeAlias, TypeVar

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from pydantic import ValidationError

from bank_shared.contracts.envelope import Envelope, Message, UnreadableMessageError, open_envelope
from bank_shared.faults import crash_point
from bank_shared.messaging.dead_letters import DeadLetters, Record
from bank_shared.topics import UnknownReplyTopicError

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)

# How long a subscriber waits for records before it asks again. FastStream's batch subscriber
# also sleeps this long after a poll that found nothing, so it is the most a record can wait
# on an idle consumer, at every hop (docs/performance.md); lower costs CPU while idle.
POLL_MS = 5
# At most this often a commit of a subscriber's offsets (docs/performance.md): after a crash,
# up to this much more comes again, and is recognised as processed.
COMMIT_INTERVAL = 0.2


class RetryLater(Exception):  # noqa: N818 (it is a request, not a description of a failure)
    """Raised by a handler that cannot apply a batch *yet* (an event arrived before the one it
    follows): the batch comes again after a pause, never dead-lettered."""


# Failures caused by the message itself: processing it again can only fail again. Anything
# else (a lost connection, a missing table, a conflict) is retried, never skipped: a stalled
# partition is loud, a dropped message is not.
POISON = (
    ValidationError,
    TypeError,
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    UnknownReplyTopicError,
)


def is_poison(error: BaseException) -> bool:
    # A unique violation means someone else wrote first: a fresh attempt sees their write.
    return isinstance(error, POISON) and not isinstance(error, asyncpg.UniqueViolationError)


@dataclass(frozen=True)
class Delivery:
    """A batch as FastStream delivers it: its records, and the consumer they came from."""

    message: KafkaMessage

    @property
    def records(self) -> Sequence[Record]:
        raw = self.message.raw_message
        return raw if isinstance(raw, tuple) else (raw,)


async def as_delivery(message: KafkaMessage) -> Delivery:
    """The subscriber's decoder: the batch's bytes are read by `BatchConsumer`, which can tell
    a message that cannot be read (dead-lettered) from one that can."""
    return Delivery(message)


async def readable_headers(
    records: tuple[Record, ...], parse: Callable[[tuple[Record, ...]], Awaitable[KafkaMessage]]
) -> KafkaMessage:
    """The subscriber's parser: FastStream decodes every header as UTF-8 before our handler
    runs, and one header that is not would fail the batch where nothing rewinds it, so the
    next batch's commit would pass over it. Headers are made decodable first."""
    return await parse(
        tuple(
            replace(
                r, headers=[(k, (v or b"").decode(errors="replace").encode()) for k, v in r.headers]
            )
            for r in records
        )
    )


class Seekable(Protocol):
    def seek(self, partition: TopicPartition, offset: int) -> None: ...


def rewind(consumer: Seekable, records: Sequence[Record]) -> None:
    """Move every partition of a batch back to its first record in the batch, so the batch
    comes again whole. Our own, not FastStream's `nack()`: some of its versions seek only the
    first record's partition, and a commit would then pass over the others' records."""
    first: dict[TopicPartition, int] = {}
    for record in records:
        partition = TopicPartition(record.topic, record.partition)
        first[partition] = min(first.get(partition, record.offset), record.offset)
    for partition, offset in first.items():
        try:
            consumer.seek(partition, offset)
        except IllegalStateError:  # revoked meanwhile: its next owner starts from its commit
            continue


class OffsetCommits:
    """Commits a subscriber's offsets in the background, at most every COMMIT_INTERVAL, and
    never past a record whose effects are not committed: the offsets are explicit (the record
    after the last one applied). A commit awaited in the consume loop would hold up the next
    batch for a broker round trip at every hop."""

    def __init__(self) -> None:
        self._pending: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    def applied(self, consumer: object, records: Sequence[Record]) -> None:
        if not isinstance(consumer, AIOKafkaConsumer):
            return  # FastStream's test broker: there is no Kafka to commit to
        for record in records:
            partition = TopicPartition(record.topic, record.partition)
            self._pending[partition] = max(self._pending.get(partition, 0), record.offset + 1)
        self._consumer = consumer
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._commit_pending(), name="offset commits")

    async def _commit_pending(self) -> None:
        while self._pending:
            await self._commit_once()
            await asyncio.sleep(COMMIT_INTERVAL)

    async def _commit_once(self) -> None:
        if self._consumer is None:
            return
        offsets, self._pending = self._pending, {}
        assigned = self._consumer.assignment()
        offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except asyncio.CancelledError:
            for tp, offset in offsets.items():  # committed by `flush`, not forgotten
                self._pending[tp] = max(self._pending.get(tp, 0), offset)
            raise
        except Exception as error:  # a rebalance or a stopping consumer: not an error
            log.info("offsets not committed (%r): those records may come again", error)

    async def flush(self) -> None:
        """Commit now what is applied and not committed yet."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._commit_once()


# How long a stopping subscriber waits for the batch in hand and its last commit.
STOP_GRACE = 15.0

# What a service's handler gets: each readable message of the batch, in order.
Batch: TypeAlias = Sequence[tuple[Envelope, M]]


class BatchConsumer(Generic[M]):
    """Hands each batch's readable messages to `handle`; dead-letters the unreadable ones (or,
    without `dead_letters`, retries the batch: a consumer for which a skipped message would
    corrupt what it builds, like the projector, must not skip one). A batch that fails because
    of one message is applied again a message at a time, and the one that still fails goes to
    the dead letters. A failure of any other kind rewinds the batch, which comes again."""

    def __init__(
        self,
        handle: Callable[[Batch[M]], Awaitable[object]],
        accepts: tuple[type[M], ...],
        dead_letters: DeadLetters | None,
        *,
        failure_backoff: float = 0.5,
    ) -> None:
        self.handle = handle
        self.accepts = accepts
        self.dead_letters = dead_letters
        self.failure_backoff = failure_backoff
        self.commits = OffsetCommits()
        self.stopping = False
        self._in_hand = asyncio.Lock()

    async def on_batch(self, delivery: Delivery) -> None:
        """The FastStream subscriber."""
        records, consumer = delivery.records, delivery.message.consumer
        if self.stopping:  # left for the next consumer of these partitions
            rewind(consumer, records)
            return
        async with self._in_hand:
            try:
                readable = await self._readable(records)
                if readable:
                    await self._apply(readable)
                crash_point("consume.after-commit-before-ack")
            except Exception as error:
                rewind(consumer, records)
                log.warning(
                    "a batch of %d from %s failed; it will come again: %r",
                    len(records),
                    records[0].topic,
                    error,
                )
                await asyncio.sleep(
                    self.failure_backoff
                )  # a database that is down is not back in 1 ms
                raise
            except BaseException:
                rewind(consumer, records)
                raise
        self.commits.applied(consumer, records)

    async def stop(self) -> None:
        """Take no more batches, let the one in hand finish, and commit what was applied, so
        that the next consumer of these partitions does not get it again. Called before the
        broker stops (which closes the consumer)."""
        self.stopping = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_GRACE):
                async with self._in_hand:
                    await self.commits.flush()

    async def _readable(self, records: Sequence[Record]) -> list[tuple[Record, Envelope, M]]:
        readable: list[tuple[Record, Envelope, M]] = []
        for record in records:
            try:
                envelope, message = open_envelope(record.value)
                if not isinstance(message, self.accepts):
                    raise UnreadableMessageError(
                        f"{envelope.type} does not belong on {record.topic}"
                    )
            except UnreadableMessageError as error:
                if self.dead_letters is None:
                    raise RetryLater(f"{record.topic}@{record.offset}: {error}") from error
                await self.dead_letters.send(record, str(error))
                continue
            readable.append((record, envelope, message))
        return readable

    async def _apply(self, items: list[tuple[Record, Envelope, M]]) -> None:
        try:
            await self.handle([(envelope, message) for _, envelope, message in items])
            return
        except Exception as error:
            if self.dead_letters is None or not is_poison(error):
                raise
            if len(items) == 1:
                await self.dead_letters.send(items[0][0], f"processing failed: {error!r}")
                return
            log.warning("a batch of %d failed (%r); applying one at a time", len(items), error)
        for item in items:
            await self._apply([item])


def subscribe(
    broker: KafkaBroker,
    consumer: BatchConsumer[Any],
    topic: str,
    *,
    group_id: str,
    title: str,
    max_records: int = 100,
) -> None:
    """Register `consumer` as the FastStream batch subscriber of `topic` in `group_id`."""
    broker.subscriber(
        topic,
        group_id=group_id,
        batch=True,
        max_records=max_records,
        batch_timeout_ms=POLL_MS,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        # Never a record of an aborted transaction, should a producer ever use them.
        isolation_level="read_committed",
        parser=readable_headers,
        decoder=as_delivery,
        title=title,
    )(consumer.on_batch)
