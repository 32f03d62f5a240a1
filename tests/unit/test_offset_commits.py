"""Background offset commits: never past what is applied, and nothing applied left behind
when the subscriber stops."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from bank_shared.messaging.consume import OffsetCommits

PARTITION = TopicPartition("t", 0)


class CommitsRecorded:
    """A consumer that records its commits; with `stuck`, its first commit never returns."""

    def __init__(self, *, stuck: bool = False) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.stuck = stuck

    def assignment(self) -> set[TopicPartition]:
        return {PARTITION}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.stuck:
            self.stuck = False
            await asyncio.Event().wait()
        self.commits.append(dict(offsets))


def records(*offsets: int) -> list[ConsumerRecord[bytes, bytes]]:
    return [ConsumerRecord("t", 0, o, 0, 0, None, b"{}", None, 0, 2, headers=[]) for o in offsets]


def as_consumer(fake: CommitsRecorded) -> AIOKafkaConsumer:
    return cast(AIOKafkaConsumer, cast(Any, fake))


async def test_what_is_applied_during_the_pause_is_committed_by_flush() -> None:
    fake, commits = CommitsRecorded(), OffsetCommits()
    commits.applied(as_consumer(fake), records(0, 1))
    await asyncio.sleep(0)  # the background commit of the first batch runs, then pauses
    commits.applied(as_consumer(fake), records(2))
    assert fake.commits == [{PARTITION: 2}]

    async with asyncio.timeout(1):  # not the pause's 200 ms and more
        await commits.flush()
    assert fake.commits == [{PARTITION: 2}, {PARTITION: 3}]


async def test_a_commit_interrupted_by_flush_is_made_by_flush() -> None:
    fake, commits = CommitsRecorded(stuck=True), OffsetCommits()
    commits.applied(as_consumer(fake), records(0))
    await asyncio.sleep(0)  # the background commit is now in flight, and stays there
    async with asyncio.timeout(1):
        await commits.flush()
    assert fake.commits == [{PARTITION: 1}]


async def test_flush_with_nothing_applied_commits_nothing() -> None:
    fake, commits = CommitsRecorded(), OffsetCommits()
    await commits.flush()
    assert fake.commits == []
