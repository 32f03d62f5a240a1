"""The relay sends a round's rows of one partition as one record batch, and a full batch ends
the round at that row: only the rows before it are marked published (by the next round's read,
which also leaves them out)."""

from __future__ import annotations

import asyncio
from typing import Any

from bank_shared.eventstore.relay import OutboxRelay
from bank_shared.settings import KafkaSettings, RelaySettings


class Batch:
    """A record batch of at most `size` bytes, as the producer's create_batch makes one."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.records = 0

    def append(self, *, key: bytes, value: bytes, timestamp: None) -> object | None:
        if (self.records + 1) * (len(key) + len(value)) > self.size:
            return None
        self.records += 1
        return object()


class FakeConnection:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.marked: list[int] = []

    async def fetchval(self, _claim: str, *_args: object) -> int:
        return 1  # the lease: this relay holds it

    async def fetch(self, _query: str, _limit: int, mark: list[int]) -> list[dict[str, Any]]:
        self.marked += mark
        return [row for row in self.rows if row["id"] not in self.marked]


class FakeProducer:
    def __init__(self, batch_bytes: int) -> None:
        self.batch_bytes = batch_bytes
        self.sent: list[tuple[str, int, int]] = []

    async def partitions_for(self, _topic: str) -> set[int]:
        return {0, 1, 2}

    def create_batch(self) -> Batch:
        return Batch(self.batch_bytes)

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> asyncio.Future[None]:
        self.sent.append((topic, partition, batch.records))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def rows(count: int, size: int = 100) -> list[dict[str, Any]]:
    return [
        {"id": i, "topic": "t", "key": f"stream-{i % 3}", "value": b"x" * size}
        for i in range(1, count + 1)
    ]


async def leader(conn: FakeConnection) -> OutboxRelay:
    relay = OutboxRelay(
        "postgresql://unused", KafkaSettings(), RelaySettings(lease_key=1), name="t"
    )
    assert await relay.lease.claim(conn)  # type: ignore[arg-type]
    return relay


async def test_one_batch_per_partition_and_every_row_marked() -> None:
    conn, producer = FakeConnection(rows(30)), FakeProducer(batch_bytes=64 * 1024)
    relay = await leader(conn)
    sent = await relay.publish_pending(conn, producer)  # type: ignore[arg-type]
    assert sent == list(range(1, 31))
    assert conn.marked == []  # marked by the next round
    assert await relay.publish_pending(conn, producer, sent) == []  # type: ignore[arg-type]
    assert conn.marked == list(range(1, 31))
    partitions = [p for _, p, _ in producer.sent]
    assert len(partitions) == len(set(partitions))  # never two batches for one partition
    assert sum(n for _, _, n in producer.sent) == 30


async def test_a_full_batch_ends_the_round_and_only_the_rows_before_it_are_marked() -> None:
    conn, producer = FakeConnection(rows(60, size=200)), FakeProducer(batch_bytes=1024)
    relay = await leader(conn)
    sent = await relay.publish_pending(conn, producer)  # type: ignore[arg-type]
    assert 0 < len(sent) < 60
    assert sent == list(range(1, len(sent) + 1))
    assert sum(n for _, _, n in producer.sent) == len(sent)
    # The next round marks those and starts at the row that did not fit.
    following = await relay.publish_pending(conn, producer, sent)  # type: ignore[arg-type]
    assert conn.marked == sent
    assert following[0] == len(sent) + 1
