"""Consuming a batch at least once: handle the readable records, dead-letter the rest, and
commit Kafka offsets only after every effect of the batch is committed in PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol, TypeAlias

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from faststream import AckPolicy
from faststream._internal.endpoint.subscriber.utils import MultiLock
from faststream.kafka import KafkaMessage, KafkaRouter
from faststream.kafka.subscriber.usecase import BatchSubscriber
from pydantic import ValidationError

from bank_shared.contracts.envelope import (
    Envelope,
    Message,
    UnreadableMessageError,
    open_envelope,
    seal,
    to_bytes,
)
from bank_shared.contracts.outcomes import UNPROCESSABLE, CommandOutcome
from bank_shared.faults import crash_point
from bank_shared.ids import derived_id
from bank_shared.topics import TopicSettings, UnknownReplyTopicError

log = logging.getLogger(__name__)

# Receives the readable messages of one Kafka batch, in order; returns once their effects
# are committed.
BatchHandler = Callable[[list[tuple[Envelope, Message]]], Awaitable[None]]
Record: TypeAlias = "ConsumerRecord[Any, Any]"


class RetryLater(Exception):  # noqa: N818 (it is a request, not a description of a failure)
    """Raised by a handler that cannot apply a batch *yet* (e.g. an event arrived before the
    one it follows): the batch is redelivered after a pause, never dead-lettered."""


# Failures that are about the message itself: applying it again can only fail again. Anything
# else (a lost connection, a failover, a missing table, a conflict) is retried, never skipped:
# a stalled partition is loud, a dropped message is not.
POISON = (
    ValidationError,
    TypeError,
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    UnknownReplyTopicError,
)


def is_poison(error: BaseException) -> bool:
    # A unique violation means someone else wrote first: a fresh attempt sees their write.
    return isinstance(error, POISON) and not isinstance(
        error, (asyncpg.UniqueViolationError, RetryLater)
    )


class DeadLetters:
    """Where records that can never be processed go, with the reason and where they came from.

    With `answer_commands` (the topics of a service that decides commands), a dead-lettered
    command also gets its one answer: a `rejected` outcome with the code
    `unprocessable_command` and the reason, on the topic its sender named. So whoever sent it
    (a REST caller, the saga's step) learns it failed instead of waiting forever."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        *,
        answer_commands: TopicSettings | None = None,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.answer_commands = answer_commands

    async def send(self, record: Record, reason: str) -> None:
        """Dead-letter a consumed record (and answer it, if it is a command)."""
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        await self.publish(
            record.key,
            record.value,
            reason,
            source=where,
            headers={
                "source-topic": record.topic,
                "source-partition": str(record.partition),
                "source-offset": str(record.offset),
            },
        )
        if self.answer_commands is not None:
            answer = unprocessable_answer(record.value, reason, self.answer_commands)
            if answer is not None:
                topic, key, envelope = answer
                await self.producer.send_and_wait(topic, value=to_bytes(envelope), key=key)

    async def publish(
        self,
        key: bytes | None,
        value: bytes | None,
        reason: str,
        *,
        source: str,
        headers: dict[str, str],
    ) -> None:
        """Dead-letter any bytes, with the reason and where they came from (`headers`)."""
        log.warning("dead-lettering %s: %s", source, reason)
        await self.producer.send_and_wait(
            self.topic,
            value=value or b"",
            key=key,
            headers=[
                ("dead-letter-reason", reason[:2000].encode()),
                *((name, text.encode()) for name, text in headers.items()),
            ],
        )


def unprocessable_answer(
    raw: bytes | None, reason: str, topics: TopicSettings
) -> tuple[str, bytes, Envelope] | None:
    """The rejected outcome of a command that cannot be processed, as (topic, key, envelope),
    or None if the record is not a command envelope one could answer. Its id is derived from
    the command's, like every outcome's: a record dead-lettered twice is answered once."""
    try:
        envelope = Envelope.model_validate_json(raw or b"")
        reply_topic = topics.outcome_topic(envelope.reply_to)
    except (ValidationError, UnknownReplyTopicError):
        return None
    if envelope.stream_version is not None or envelope.type == CommandOutcome.message_type():
        return None  # an event or an outcome: no one waits for an answer to it
    stream_id = next(
        (
            str(envelope.payload[k])
            for k in STREAM_FIELDS
            if isinstance(envelope.payload.get(k), str)
        ),
        envelope.stream_id or "",
    )
    outcome = CommandOutcome(
        command_id=envelope.message_id,
        command_type=envelope.type,
        stream_id=stream_id,
        status="rejected",
        code=UNPROCESSABLE,
        reason=f"the command could not be processed: {reason}"[:1000],
    )
    sealed = seal(
        outcome,
        message_id=derived_id(envelope.message_id, "outcome"),
        correlation_id=envelope.correlation_id,
        causation_id=envelope.message_id,
        occurred_at=envelope.occurred_at,
    )
    return reply_topic, stream_id.encode(), sealed


# The payload fields that name the stream a command addresses (its Kafka key).
STREAM_FIELDS = ("account_id", "transfer_id")


# At most this often a commit per subscriber: at a few records per batch, a commit per batch
# was most of the broker's CPU (`python -m bench.steady_rate --rate 25`: Kafka 25.6 ms of CPU
# per transfer with a commit per batch, 8.6 ms with this in the next run). What it costs:
# after a crash, up to this much more is delivered again, and dropped as already applied.
COMMIT_INTERVAL = 0.2


class OffsetCommits:
    """Commits one subscriber's Kafka offsets in the background, never past an applied record.

    Why not await the commit in the consume loop: a commit is a broker round trip (8 ms median
    under load, measured with `make bench`), and while it runs the next batch waits, on every
    hop of a transfer. Why it is safe: every consumer records what it applied, by message id or
    stream version, in the same PostgreSQL transaction as the effect, so a record whose offset
    was not committed yet when the process died is delivered again and changes nothing.
    Offsets are explicit (the record after the last applied one), so a commit can never cover
    a batch still being handled; only partitions still assigned are committed.
    """

    def __init__(self) -> None:
        # Read once, when the subscriber is registered (a test lengthens it for its own).
        self.interval = COMMIT_INTERVAL
        self._pending: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    def applied(self, consumer: AIOKafkaConsumer, records: Sequence[Record]) -> None:
        """The effects of `records` are committed: their offsets may be committed too."""
        if not records:
            return
        for record in records:
            partition = TopicPartition(record.topic, record.partition)
            self._pending[partition] = max(self._pending.get(partition, 0), record.offset + 1)
        self._consumer = consumer
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._commit_pending(), name="offset commits")

    async def _commit_pending(self) -> None:
        # One commit in flight, then a pause; what is applied meanwhile goes with the next one.
        while self._pending and self._consumer is not None:
            await self._commit_once(self._consumer)
            await asyncio.sleep(self.interval)

    async def _commit_once(self, consumer: AIOKafkaConsumer) -> None:
        offsets, self._pending = self._pending, {}
        assigned = consumer.assignment()
        offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except asyncio.CancelledError:
            # Interrupted by `flush`: these offsets are committed by it, not forgotten.
            for tp, offset in offsets.items():
                self._pending[tp] = max(self._pending.get(tp, 0), offset)
            raise
        except Exception as error:  # a rebalance or a stopping consumer: not an error
            log.info("offsets not committed (%r): those records may come again", error)

    async def flush(self) -> None:
        """Commit now what is applied and not committed yet: the pause between background
        commits would otherwise outlive a consumer that is closing."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pending and self._consumer is not None:
            await self._commit_once(self._consumer)


async def tolerant_batch_parser(
    records: tuple[Record, ...],
    original: Callable[[tuple[Record, ...]], Awaitable[KafkaMessage]],
) -> KafkaMessage:
    """FastStream decodes every header as UTF-8 before our handler runs. One header that is
    not (or a null one) would fail the batch *outside* the handler, where nothing rewinds the
    consumer, and the next batch's commit would skip it. So headers are made decodable first;
    the bytes that matter (key, value) are untouched. Pass as `parser=` to batch subscribers."""
    return await original(
        tuple(
            replace(
                r, headers=[(k, (v or b"").decode(errors="replace").encode()) for k, v in r.headers]
            )
            for r in records
        )
    )


async def the_message_itself(message: KafkaMessage) -> KafkaMessage:
    """The batch handler's argument is the FastStream message (its records, its consumer and
    its `nack`). Pass as `decoder=` to batch subscribers of a broker built with
    `apply_types=False`: FastStream's own decoder would parse every record's JSON only for
    the handler to read it again, and resolving the message through FastDepends instead runs
    a synchronous lookup in a worker thread for every batch (fast_depends 3, `CallModel.asolve`):
    at 25 transfers/s that worker was the saga's second busiest thread (151 context switches
    a second, read from /proc during `python -m bench.steady_rate`)."""
    return message


class Seekable(Protocol):
    def seek(self, partition: TopicPartition, offset: int) -> None: ...


def rewind(consumer: Seekable, records: Sequence[Record]) -> None:
    """Move every partition of a failed batch back to its first record in the batch, so that
    the batch comes again whole. Our own, not FastStream's `nack()`: some of its versions seek
    only the first record's partition, and the next batch's commit would then pass over the
    failed records of the others."""
    first: dict[TopicPartition, int] = {}
    for record in records:
        partition = TopicPartition(record.topic, record.partition)
        first[partition] = min(first.get(partition, record.offset), record.offset)
    for partition, offset in first.items():
        consumer.seek(partition, offset)


def batch_records(message: KafkaMessage) -> Sequence[Record]:
    raw = message.raw_message
    return raw if isinstance(raw, tuple) else (raw,)


async def consume_batch(
    message: KafkaMessage,
    handle: BatchHandler,
    dead_letters: DeadLetters | None,
    *,
    accepts: Callable[[Message], bool] = lambda _: True,
    failure_backoff: float = 0.5,
    commits: OffsetCommits,
) -> int:
    """Process a FastStream batch (subscriber with `batch=True, ack_policy=AckPolicy.MANUAL,
    parser=tolerant_batch_parser`).

    With `dead_letters`, a record that cannot be read goes to the dead-letter topic (at least
    once: a redelivered batch sends it again), and a batch that fails because of a message
    (`is_poison`) is applied again one message at a time, the one that still fails being
    dead-lettered: one bad command cannot block its partition. Without `dead_letters` (a
    consumer for which skipping a message corrupts what it builds, like the projector), every
    failure is retried. On success the offsets are committed, in the background through
    `commits`. On failure every partition of the batch is rewound to its first record
    (`rewind`) and the error propagates: the batch comes again, and what was applied is
    recognised by its message id.
    """
    records = batch_records(message)
    try:
        readable: list[tuple[Record, Envelope, Message]] = []
        for record in records:
            try:
                envelope, payload = open_envelope(record.value)
                if not accepts(payload):
                    raise UnreadableMessageError(
                        f"{envelope.type} does not belong on topic {record.topic}"
                    )
            except UnreadableMessageError as error:
                if dead_letters is None:
                    raise RetryLater(f"{record.topic}@{record.offset}: {error}") from error
                await dead_letters.send(record, str(error))
                continue
            readable.append((record, envelope, payload))
        if readable:
            await _apply(readable, handle, dead_letters)
        crash_point("consume.after-commit-before-ack")
    except Exception as error:
        rewind(message.consumer, records)
        log.warning(
            "batch of %d from %s failed, will come again: %r",
            len(records),
            records[0].topic if records else "?",
            error,
        )
        # Pause before the batch comes again: a database that is down is not back in 1 ms.
        await asyncio.sleep(failure_backoff)
        raise
    except BaseException:
        rewind(message.consumer, records)
        raise
    commits.applied(message.consumer, records)
    return len(records)


async def _apply(
    items: list[tuple[Record, Envelope, Message]],
    handle: BatchHandler,
    dead_letters: DeadLetters | None,
) -> None:
    try:
        await handle([(envelope, payload) for _, envelope, payload in items])
        return
    except Exception as error:
        if dead_letters is None or not is_poison(error):
            raise
        if len(items) == 1:
            await dead_letters.send(items[0][0], f"processing failed: {error!r}")
            return
        log.warning("batch of %d failed (%r); applying one at a time", len(items), error)
    for item in items:
        await _apply([item], handle, dead_letters)


# How long one poll waits for the first record before it polls again: no record waits for it
# (the poll returns as soon as one is fetched), it only sets how often an idle subscriber wakes.
POLL_TIMEOUT_MS = 1000


def poll_without_pause(subscriber: BatchSubscriber, max_records: int) -> None:
    """Make a FastStream batch subscriber poll again at once after a poll that found nothing.

    Why: FastStream's `BatchSubscriber.get_msg` (faststream/kafka/subscriber/usecase.py, 0.7)
    *sleeps* `batch_timeout_ms` after an empty poll, and a record that lands during that sleep
    waits for it, on every hop of a transfer. With the 10 ms this project used to set, that was
    half the median latency at a light load: `python -m bench.steady_rate --rate 25`, in
    alternating runs, p50 72.9 and 77.9 ms with the sleep, 35.8 and 36.5 ms without
    (docs/performance.md, change 18). aiokafka's `getmany` already waits until a record is
    fetched or the timeout passes, so the poll alone does the waiting. FastStream has no
    setting for this; its consume loop calls `self.get_msg`, which this instance attribute
    replaces.
    """

    async def get_msg(consumer: AIOKafkaConsumer) -> tuple[Record, ...]:
        found = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=max_records)
        return tuple(record for records in found.values() for record in records)

    subscriber.get_msg = get_msg  # type: ignore[method-assign]


# How long a stopping subscriber waits for the batch in hand, then for its last commit.
STOP_GRACE = 15.0
FLUSH_TIMEOUT = 5.0


def stop_after_committing(subscriber: BatchSubscriber, commits: OffsetCommits) -> None:
    """Make a stopping subscriber commit the offsets of everything it applied before
    FastStream closes its consumer.

    Why: FastStream's `stop` waits for the batch in hand (its `lock`), then cancels the consume
    loop and closes the consumer, and the offsets applied since the last background commit (up
    to COMMIT_INTERVAL's worth, the batch in hand among them) were never committed: after every
    restart the group's next consumer handled those records again (and dropped them as
    applied). Here the loop takes no new batch, the one in hand finishes, its offsets and the
    others pending are committed (bounded: a broker that does not answer does not hold up the
    stop), then FastStream's own stop runs, whatever happened before. Records fetched but not
    handled are left to the next consumer. Like `poll_without_pause`, an instance attribute
    replaces the subscriber's method; FastStream has no hook between the two steps.
    """
    stop = subscriber.stop

    async def stop_when_committed() -> None:
        # `consume` checks `running` and takes the lock without yielding in between, so once
        # the lock is released no batch is being handled and none will start.
        subscriber.running = False
        try:
            if isinstance(subscriber.lock, MultiLock):
                await subscriber.lock.wait_release(STOP_GRACE)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(commits.flush(), FLUSH_TIMEOUT)
        finally:
            await stop()

    subscriber.stop = stop_when_committed  # type: ignore[method-assign]


def subscribe_batches(
    router: KafkaRouter,
    topic: str,
    *,
    group_id: str,
    handle: BatchHandler,
    dead_letters: DeadLetters | None,
    accepts: Callable[[Message], bool],
    max_records: int = 100,
) -> None:
    """Register the one way this project consumes a topic: batches, offsets committed (in the
    background) only after the effects (FastStream's automatic acknowledgement would commit
    them before), headers made decodable first, and only committed records read if a producer
    ever uses Kafka transactions."""

    commits = OffsetCommits()

    async def on_batch(message: KafkaMessage) -> None:
        await consume_batch(message, handle, dead_letters, accepts=accepts, commits=commits)

    subscriber = router.subscriber(
        topic,
        group_id=group_id,
        batch=True,
        max_records=max_records,
        batch_timeout_ms=POLL_TIMEOUT_MS,
        ack_policy=AckPolicy.MANUAL,
        parser=tolerant_batch_parser,
        decoder=the_message_itself,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        title=f"{group_id}:{topic}",
    )
    poll_without_pause(subscriber, max_records)
    stop_after_committing(subscriber, commits)
    subscriber(on_batch)
