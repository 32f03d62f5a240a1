"""Offsets are committed in the background, never past what is applied, and a stopping
subscriber finishes its batch and commits what it applied before its consumer closes."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from bank_shared.contracts.accounts import DepositMoney
from bank_shared.contracts.envelope import Envelope, Message, to_bytes
from bank_shared.messaging import consume
from bank_shared.messaging.consume import BatchConsumer, Delivery, OffsetCommits
from tests.support import envelope_for

PARTITION = TopicPartition("t", 0)


class CommitsRecorded(AIOKafkaConsumer):  # type: ignore[misc]
    """A consumer that records its commits and seeks in `log` (it never connects); with
    `stuck`, its commits (all of them, or only the first) never return."""

    def __init__(self, log: list[object], *, stuck: str = "") -> None:
        super().__init__(bootstrap_servers="127.0.0.1:9")
        self.log = log
        self.stuck = stuck

    def assignment(self) -> set[TopicPartition]:
        return {PARTITION}

    async def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        if self.stuck:
            self.stuck = "" if self.stuck == "first" else self.stuck
            await asyncio.Event().wait()
        self.log.append(dict(offsets or {}))

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.log.append(("seek", offset))


def records(*offsets: int) -> list[ConsumerRecord[bytes, bytes]]:
    value = to_bytes(envelope_for(DepositMoney(account_id="a", amount="1")))
    return [ConsumerRecord("t", 0, o, 0, 0, None, value, None, 0, 2, headers=[]) for o in offsets]


def delivery(consumer: CommitsRecorded, *offsets: int) -> Delivery:
    """A batch as FastStream hands it over: its records and their consumer."""
    message = type("Batch", (), {"raw_message": tuple(records(*offsets)), "consumer": consumer})
    return Delivery(cast(Any, message))


@pytest.fixture(autouse=True)
def long_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    # The pause between background commits, longer than any test: only a flush commits early.
    monkeypatch.setattr(consume, "COMMIT_INTERVAL", 60.0)


async def test_what_is_applied_during_the_pause_is_committed_by_flush() -> None:
    log: list[object] = []
    consumer, commits = CommitsRecorded(log), OffsetCommits()
    commits.applied(consumer, records(0, 1))
    await asyncio.sleep(0)  # the background commit of the first batch runs, then pauses
    commits.applied(consumer, records(2))
    assert log == [{PARTITION: 2}]

    async with asyncio.timeout(1):
        await commits.flush()
    assert log == [{PARTITION: 2}, {PARTITION: 3}]


async def test_a_commit_interrupted_by_flush_is_made_by_flush() -> None:
    log: list[object] = []
    consumer, commits = CommitsRecorded(log, stuck="first"), OffsetCommits()
    commits.applied(consumer, records(0))
    await asyncio.sleep(0)  # the background commit is now in flight, and stays there
    async with asyncio.timeout(1):
        await commits.flush()
    assert log == [{PARTITION: 1}]


async def test_a_stop_waits_for_the_batch_in_hand_commits_it_and_takes_no_other() -> None:
    log: list[object] = []
    consumer = CommitsRecorded(log)
    release = asyncio.Event()
    handled: list[Envelope] = []

    async def slow(batch: consume.Batch[Message]) -> None:
        await release.wait()
        handled.extend(envelope for envelope, _ in batch)

    subscriber = BatchConsumer(slow, (DepositMoney,), dead_letters=None)
    in_hand = asyncio.create_task(subscriber.on_batch(delivery(consumer, 0, 1)))
    await asyncio.sleep(0.01)
    stopping = asyncio.create_task(subscriber.stop())
    await asyncio.sleep(0.01)
    assert not stopping.done()  # waiting for the batch in hand
    await subscriber.on_batch(delivery(consumer, 2))  # arrives while stopping: given back
    release.set()
    async with asyncio.timeout(1):
        await asyncio.gather(in_hand, stopping)
    assert len(handled) == 2
    assert log == [("seek", 2), {PARTITION: 2}]


async def test_a_broker_that_does_not_answer_does_not_hold_up_the_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(consume, "STOP_GRACE", 0.05)
    log: list[object] = []
    consumer = CommitsRecorded(log, stuck="all")

    async def nothing(_: consume.Batch[Message]) -> None:
        return None

    subscriber = BatchConsumer(nothing, (DepositMoney,), dead_letters=None)
    await subscriber.on_batch(delivery(consumer, 0))
    async with asyncio.timeout(1):
        await subscriber.stop()
    assert log == []
