"""Test helpers: send commands as the command API will, and watch topics as a client would."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from fastapi import FastAPI

from bank_accounts.account import BANK_ACCOUNT, AccountState
from bank_accounts.handlers import on_account_commands
from bank_shared.contracts.accounts import AccountCommand
from bank_shared.contracts.envelope import Envelope, Message, open_envelope, seal, to_bytes
from bank_shared.contracts.outcomes import CommandOutcome
from bank_shared.eventstore.store import PostgresStorage, read_streams
from bank_shared.eventstore.unit_of_work import EventStore
from bank_shared.service import Platform
from bank_shared.settings import KafkaSettings, PostgresSettings
from bank_shared.topics import TopicSettings
from bank_transfers_saga.saga import step_command_id
from bank_transfers_saga.steps import Steps
from bank_transfers_saga.transfer import TRANSFER, TransferState


@contextlib.asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[Platform]:
    """A service in-process: its app's lifespan running (pool, topics, broker, relay)."""
    async with app.router.lifespan_context(app):
        yield app.state.platform


def make_producer(kafka: KafkaSettings, *, client_id: str = "tests") -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap, client_id=client_id, enable_idempotence=True
    )


@dataclass(frozen=True)
class Database:
    """A pool, as the stores take it (what `Platform.pool` is in a service)."""

    pool: asyncpg.Pool


def account_store(
    pool: asyncpg.Pool,
    topics: TopicSettings,
    **options: Any,
) -> EventStore[AccountState]:
    """The accounts service's event store on `pool`, as its app makes it."""
    return EventStore(
        PostgresStorage(Database(pool)),
        BANK_ACCOUNT,
        topics,
        events_topic=topics.account_events,
        **options,
    )


def transfer_store(
    pool: asyncpg.Pool,
    topics: TopicSettings,
    **options: Any,
) -> EventStore[TransferState]:
    return EventStore(
        PostgresStorage(Database(pool)),
        TRANSFER,
        topics,
        events_topic=topics.transfer_events,
        **options,
    )


def saga_steps(pool: asyncpg.Pool, topics: TopicSettings, **options: Any) -> Steps:
    return Steps(Database(pool), topics, **options)


async def history(dsn: str, stream_id: str) -> list[Envelope]:
    """A stream's events as its event store holds them, in version order."""
    conn = await asyncpg.connect(dsn)
    try:
        return (await read_streams(conn, [stream_id])).get(stream_id, [])
    finally:
        await conn.close()


async def decide(
    store: EventStore[AccountState], *commands: AccountCommand | tuple[Envelope, AccountCommand]
) -> list[CommandOutcome]:
    """Apply account commands as the accounts service would, as one batch; their answers."""
    batch = [c if isinstance(c, tuple) else (envelope_for(c), c) for c in commands]
    return await on_account_commands(store, batch)


def withdrawn(transfer_id: str, source: str) -> tuple[Envelope, CommandOutcome]:
    """The accounts service's accepted answer to a transfer's withdraw step, as a message of
    its own (a new message id at each call)."""
    outcome = CommandOutcome(
        command_id=step_command_id(transfer_id, "withdraw"),
        command_type="WithdrawMoney",
        stream_id=source,
        status="accepted",
        version=2,
        balance=Decimal("90.00"),
    )
    envelope = seal(
        outcome,
        message_id=uuid.uuid4(),
        correlation_id=uuid.uuid4(),
        causation_id=outcome.command_id,
        occurred_at=datetime.now(UTC),
    )
    return envelope, outcome


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
        partitions = await partitions_of(self.kafka, self.topic)
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


async def partitions_of(kafka: KafkaSettings, topic: str) -> list[TopicPartition]:
    """The topic's partitions, once the broker knows the topic (it may be new)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            [found] = await admin.describe_topics([topic])
            if found["error_code"] == 0 and found["partitions"]:
                return sorted(TopicPartition(topic, p["partition"]) for p in found["partitions"])
            if time.monotonic() > deadline:
                raise AssertionError(f"topic {topic} does not exist")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


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
    """How many committed records the topic holds (read_committed: aborted ones and
    transaction markers are not counted)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        partitions = await partitions_of(kafka, topic)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        count = 0
        while True:
            positions = {p: await consumer.position(p) for p in partitions}
            if all(positions[p] >= ends[p] for p in partitions):
                return count
            batch = await consumer.getmany(timeout_ms=500)
            count += sum(len(records) for records in batch.values())
    finally:
        await consumer.stop()


def fresh_topics(prefix: str, partitions: int = 3) -> TopicSettings:
    """A set of topic names nobody else uses (topics are created by the services at start)."""
    return TopicSettings(partitions=partitions).prefixed(f"test.{prefix}.{uuid.uuid4().hex[:8]}")


def service_env(
    kafka: KafkaSettings, pg: PostgresSettings, topics: TopicSettings
) -> dict[str, str]:
    """Environment for a service process that talks to the test infrastructure and topics."""
    return {
        **os.environ,
        "BANK_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
        **{f"BANK_PG_{name.upper()}": str(value) for name, value in pg},
        **{f"BANK_TOPIC_{name.upper()}": str(value) for name, value in topics},
    }


@dataclass
class ServiceProcess:
    """A service started as `python -m <module>`: wait until /ready, kill, or stop it."""

    module: str
    env: dict[str, str]
    port: int
    process: asyncio.subprocess.Process | None = None

    async def start(self) -> ServiceProcess:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            self.module,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        return self

    async def wait_ready(self, within: float = 60) -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=2) as client:

            async def ready() -> bool:
                if self.returncode is not None:
                    raise AssertionError(f"{self.module} exited: {await self.output()}")
                try:
                    return (await client.get("/ready")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(ready, within=within, what=f"{self.module} /ready")

    @property
    def returncode(self) -> int | None:
        return self.process.returncode if self.process else None

    async def wait_exit(self, within: float = 60) -> int:
        assert self.process is not None
        return await asyncio.wait_for(self.process.wait(), within)

    async def output(self) -> str:
        assert self.process is not None
        assert self.process.stdout is not None
        if self.process.returncode is None:
            return "(still running)"
        return (await self.process.stdout.read()).decode(errors="replace")[-4000:]

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not stop within 30 s."""
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
