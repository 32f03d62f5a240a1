"""Background offset commits: never past what is applied, and nothing applied left
uncommitted when the subscriber stops."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from faststream._internal.endpoint.subscriber.utils import MultiLock
from faststream.kafka.subscriber.usecase import BatchSubscriber

from bank_shared.messaging import consume
from bank_shared.messaging.consume import OffsetCommits, stop_after_committing

PARTITION = TopicPartition("t", 0)


class CommitsRecorded:
    """A consumer that records its commits in `log`; with `stuck`, its commits (all of them,
    or only the first) never return."""

    def __init__(self, log: list[object], *, stuck: str = "") -> None:
        self.log = log
        self.stuck = stuck

    def assignment(self) -> set[TopicPartition]:
        return {PARTITION}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.stuck:
            self.stuck = "" if self.stuck == "first" else self.stuck
            await asyncio.Event().wait()
        self.log.append(dict(offsets))


class Stoppable:
    """What `stop_after_committing` needs of a FastStream batch subscriber."""

    def __init__(self, log: list[object]) -> None:
        self.log = log
        self.running = True
        self.lock = MultiLock()

    async def stop(self) -> None:
        self.log.append("consumer closed")


def records(*offsets: int) -> list[ConsumerRecord[bytes, bytes]]:
    return [ConsumerRecord("t", 0, o, 0, 0, None, b"{}", None, 0, 2, headers=[]) for o in offsets]


def as_consumer(fake: CommitsRecorded) -> AIOKafkaConsumer:
    return cast(AIOKafkaConsumer, cast(Any, fake))


@pytest.fixture(autouse=True)
def long_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    # The pause between background commits, longer than any test: only a flush commits early.
    monkeypatch.setattr(consume, "COMMIT_INTERVAL", 60.0)


async def test_what_is_applied_during_the_pause_is_committed_by_flush() -> None:
    log: list[object] = []
    fake, commits = CommitsRecorded(log), OffsetCommits()
    commits.applied(as_consumer(fake), records(0, 1))
    await asyncio.sleep(0)  # the background commit of the first batch runs, then pauses
    commits.applied(as_consumer(fake), records(2))
    assert log == [{PARTITION: 2}]

    async with asyncio.timeout(1):
        await commits.flush()
    assert log == [{PARTITION: 2}, {PARTITION: 3}]


async def test_a_commit_interrupted_by_flush_is_made_by_flush() -> None:
    log: list[object] = []
    fake, commits = CommitsRecorded(log, stuck="first"), OffsetCommits()
    commits.applied(as_consumer(fake), records(0))
    await asyncio.sleep(0)  # the background commit is now in flight, and stays there
    async with asyncio.timeout(1):
        await commits.flush()
    assert log == [{PARTITION: 1}]


async def test_a_stop_waits_for_the_batch_in_hand_commits_it_then_closes() -> None:
    log: list[object] = []
    fake, commits, subscriber = CommitsRecorded(log), OffsetCommits(), Stoppable(log)
    stop_after_committing(cast(BatchSubscriber, cast(Any, subscriber)), commits)
    commits.applied(as_consumer(fake), records(0))
    subscriber.lock.acquire()  # a batch is being handled

    stopping = asyncio.create_task(subscriber.stop())
    await asyncio.sleep(0.05)
    assert not subscriber.running  # no batch after this one
    assert not stopping.done()  # waiting for the batch in hand
    commits.applied(as_consumer(fake), records(1))  # it is applied...
    subscriber.lock.release()  # ...and done
    async with asyncio.timeout(1):
        await stopping
    assert log == [{PARTITION: 1}, {PARTITION: 2}, "consumer closed"]


async def test_a_broker_that_does_not_answer_does_not_keep_the_consumer_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(consume, "FLUSH_TIMEOUT", 0.05)
    log: list[object] = []
    fake, commits, subscriber = CommitsRecorded(log, stuck="all"), OffsetCommits(), Stoppable(log)
    stop_after_committing(cast(BatchSubscriber, cast(Any, subscriber)), commits)
    commits.applied(as_consumer(fake), records(0))
    async with asyncio.timeout(1):
        await subscriber.stop()
    assert log == ["consumer closed"]
