"""How a batch subscriber waits for records: in the poll itself, never in a pause after it."""

from __future__ import annotations

from typing import Any, cast

import anyio
import pytest
from aiokafka import ConsumerRecord, TopicPartition
from faststream.kafka import KafkaRouter

from bank_shared.messaging.consume import POLL_TIMEOUT_MS, subscribe_batches


class PollsInTurn:
    """A consumer whose polls return the given results one after another."""

    def __init__(self, *results: dict[TopicPartition, list[Any]]) -> None:
        self.results = list(results)
        self.polls: list[tuple[int, int | None]] = []

    async def getmany(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Any]]:
        self.polls.append((timeout_ms, max_records))
        return self.results.pop(0)


def record(partition: int, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("t", partition, offset, 0, 0, None, b"{}", None, 0, 2, headers=[])


async def test_an_empty_poll_is_followed_at_once_by_the_next_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """FastStream's own batch subscriber sleeps after an empty poll, and a record arriving
    meanwhile waits for the sleep to end; ours polls again straight away."""

    async def no_pause(*_: object) -> None:
        raise AssertionError("the subscriber paused after an empty poll")

    monkeypatch.setattr(anyio, "sleep", no_pause)

    async def handle(_: object) -> None:
        return None

    router = KafkaRouter()
    subscribe_batches(
        router,
        "t",
        group_id="g",
        handle=handle,
        dead_letters=None,
        accepts=lambda _: True,
        max_records=7,
    )
    (registered,) = router.subscribers
    subscriber = cast(Any, registered)  # the batch subscriber, with its get_msg replaced
    first, second, third = record(0, 5), record(0, 6), record(1, 0)
    consumer = PollsInTurn(
        {}, {TopicPartition("t", 0): [first, second], TopicPartition("t", 1): [third]}
    )

    assert await subscriber.get_msg(consumer) == ()
    assert await subscriber.get_msg(consumer) == (first, second, third)
    assert consumer.polls == [(POLL_TIMEOUT_MS, 7), (POLL_TIMEOUT_MS, 7)]
