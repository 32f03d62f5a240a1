"""Poison on every consumed topic: malformed JSON, an unknown type and an unknown schema
version are dead-lettered with the reason, and every consumer carries on."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from bank_deploy.providers import Endpoints
from bank_projector.app import create_app as projector_app
from bank_projector.settings import ProjectorSettings
from bank_shared.contracts.accounts import AccountOpened, MoneyDeposited, OpenAccount
from bank_shared.contracts.actors import TELLER
from bank_shared.contracts.envelope import Envelope, seal_events, to_bytes
from bank_shared.contracts.transfers import StartTransfer
from bank_shared.service import Platform
from bank_shared.topics import TopicSettings
from tests.command_api_client import serving, settings_for
from tests.read_model import dump_read_model
from tests.support import (
    Record,
    TopicTap,
    account_store,
    decide,
    envelope_for,
    eventually,
    fresh_topics,
    new_id,
    running,
)

pytestmark = pytest.mark.integration


def poisons(good: Envelope) -> dict[str, bytes]:
    """Three ways a record can be unreadable, each unique to this test run."""
    envelope = good.model_dump(mode="json")
    return {
        "not a message envelope": f"{{not json {uuid.uuid4()}".encode(),
        "unknown message type": to_bytes(
            Envelope.model_validate(
                envelope | {"type": "Teleport", "message_id": str(uuid.uuid4())}
            )
        ),
        "schema version 9": to_bytes(
            Envelope.model_validate(
                envelope | {"schema_version": 9, "message_id": str(uuid.uuid4())}
            )
        ),
    }


@pytest.fixture(scope="module")
async def api(
    infra: Endpoints, topics: TopicSettings, accounts: Platform, saga: Platform
) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(settings_for(infra, topics)) as client:
        yield client


async def poison(producer: AIOKafkaProducer, topic: str, key: str, good: Envelope) -> list[bytes]:
    records = list(poisons(good).values())
    for value in records:
        await producer.send_and_wait(topic, value=value, key=key.encode())
    return records


async def test_every_consumer_dead_letters_poison_and_carries_on(
    infra: Endpoints,
    topics: TopicSettings,
    accounts: Platform,
    saga: Platform,
    projector: Platform,
    producer: AIOKafkaProducer,
    dead_letters: TopicTap,
    api: httpx.AsyncClient,
) -> None:
    store = account_store(accounts.pool, topics)
    alice, bob = new_id("alice"), new_id("bob")
    for account, balance in ((alice, "100"), (bob, "0")):
        command = OpenAccount(
            account_id=account, owner="P", initial_balance=balance, owned_by=TELLER
        )
        await decide(store, command)

    transfer_id = new_id("t")
    start = envelope_for(
        StartTransfer(
            transfer_id=transfer_id, source_account_id=alice, target_account_id=bob, amount="10"
        )
    )
    sent: dict[str, list[bytes]] = {
        topics.transfer_commands: await poison(
            producer, topics.transfer_commands, transfer_id, start
        ),
        topics.command_outcomes: await poison(producer, topics.command_outcomes, alice, start),
        topics.step_outcomes: await poison(producer, topics.step_outcomes, alice, start),
        topics.account_events: await poison(producer, topics.account_events, new_id("x"), start),
        topics.transfer_events: await poison(producer, topics.transfer_events, new_id("y"), start),
    }
    # Then good traffic through every consumer: the saga (commands and answers), the
    # accounts service, the projector (both topics) and the command API's outcome consumer.
    await producer.send_and_wait(
        topics.transfer_commands, value=to_bytes(start), key=transfer_id.encode()
    )
    deposit = await api.post(f"/accounts/{bob}/deposits", json={"amount": "1.00"})
    assert deposit.status_code == 200, deposit.text

    async def transfer_projected() -> bool:
        rows = await dump_read_model(infra.pg)
        return any(r[0] == transfer_id and r[4] == "completed" for r in rows["transfers"])

    await eventually(transfer_projected, within=60, what="the transfer after the poison")

    for topic, records in sent.items():

        def one_of(record: Record, values: list[bytes] = records) -> bool:
            return record.value in values

        letters = await dead_letters.wait_for(one_of, count=len(records))
        reasons = {r.value: r.headers["dead-letter-reason"].decode() for r in letters}
        assert {r.headers["source-topic"].decode() for r in letters} == {topic}
        assert "not a message envelope" in reasons[records[0]]
        assert "unknown message type 'Teleport'" in reasons[records[1]]
        assert "schema version 9" in reasons[records[2]]


async def test_an_unreadable_event_parks_its_stream_and_the_partition_goes_on(
    isolated: Endpoints, producer: AIOKafkaProducer
) -> None:
    """Skipping the event would make every later event of its stream a gap that stops the
    partition: the stream is parked instead, and the others go on. (A projector and topics
    of its own: these events exist in no event store.)"""
    topics = fresh_topics("parking")
    settings = ProjectorSettings(
        kafka=isolated.kafka,
        pg=isolated.pg,
        topics=topics,
        accounts_group=f"{topics.account_events}.projector",
        transfers_group=f"{topics.transfer_events}.projector",
    )
    async with running(projector_app(settings)):
        dead_letters = await TopicTap(isolated.kafka, topics.dead_letters).start()
        try:
            await park_and_go_on(isolated, topics, producer, dead_letters)
        finally:
            await dead_letters.stop()


async def park_and_go_on(
    infra: Endpoints,
    topics: TopicSettings,
    producer: AIOKafkaProducer,
    dead_letters: TopicTap,
) -> None:
    poisoned, healthy = new_id("parked"), new_id("healthy")
    opened = [
        seal_events(
            [
                AccountOpened(
                    account_id=a, owner="P", initial_balance="5", balance_after="5", owned_by=TELLER
                )
            ],
            cause=uuid.uuid4(),
            correlation_id=uuid.uuid4(),
            stream_id=a,
            after_version=0,
            occurred_at=datetime.now(UTC),
        )[0]
        for a in (poisoned, healthy)
    ]
    later = seal_events(
        [MoneyDeposited(account_id=poisoned, amount="1", balance_after="6", description=None)],
        cause=uuid.uuid4(),
        correlation_id=uuid.uuid4(),
        stream_id=poisoned,
        after_version=1,
        occurred_at=datetime.now(UTC),
    )[0]
    unreadable = to_bytes(opened[0].model_copy(update={"schema_version": 9}))
    # One key: all three on one partition, the healthy stream's event behind the others.
    for value in (unreadable, to_bytes(later), to_bytes(opened[1])):
        await producer.send_and_wait(topics.account_events, value=value, key=poisoned.encode())

    async def healthy_projected() -> bool:
        rows = await dump_read_model(infra.pg)
        return any(r[0] == healthy for r in rows["accounts"])

    await eventually(healthy_projected, what="the event behind the poisoned stream")
    await dead_letters.wait_for(lambda r: r.value == unreadable)
    conn = await asyncpg.connect(infra.pg.dsn(infra.pg.read_db))
    try:
        parked = await conn.fetchrow(
            "SELECT version, reason FROM parked_streams WHERE stream_id = $1", poisoned
        )
        row = await conn.fetchval("SELECT 1 FROM accounts WHERE account_id = $1", poisoned)
    finally:
        await conn.close()
    assert parked is not None
    assert parked["version"] == 1
    assert "schema version 9" in parked["reason"]
    assert row is None, "the parked stream's later event must not be applied on a gap"


async def test_an_event_before_the_unreadable_one_is_applied_though_its_stream_is_parked(
    isolated: Endpoints, producer: AIOKafkaProducer
) -> None:
    """Version 1 readable, version 2 not, both in the projector's first batch: the stream is
    parked at version 2, and version 1 is still applied."""
    topics = fresh_topics("parking-later")
    account = new_id("half")
    first, second = seal_events(
        [
            AccountOpened(
                account_id=account,
                owner="P",
                initial_balance="5",
                balance_after="5",
                owned_by=TELLER,
            ),
            MoneyDeposited(account_id=account, amount="1", balance_after="6", description=None),
        ],
        cause=uuid.uuid4(),
        correlation_id=uuid.uuid4(),
        stream_id=account,
        after_version=0,
        occurred_at=datetime.now(UTC),
    )
    unreadable = to_bytes(second.model_copy(update={"schema_version": 9}))
    # Both written before the projector starts: its first fetch finds them together.
    for value in (to_bytes(first), unreadable):
        await producer.send_and_wait(topics.account_events, value=value, key=account.encode())
    settings = ProjectorSettings(
        kafka=isolated.kafka,
        pg=isolated.pg,
        topics=topics,
        accounts_group=f"{topics.account_events}.projector",
        transfers_group=f"{topics.transfer_events}.projector",
    )
    async with running(projector_app(settings)):
        conn = await asyncpg.connect(isolated.pg.dsn(isolated.pg.read_db))
        try:

            async def parked() -> bool:
                found = await conn.fetchval(
                    "SELECT version FROM parked_streams WHERE stream_id = $1", account
                )
                return bool(found == 2)

            await eventually(parked, what="the stream parked at version 2")
            await eventually(
                lambda: conn.fetchval(
                    "SELECT version FROM accounts WHERE account_id = $1", account
                ),
                what="version 1 applied",
            )
            row = await conn.fetchrow(
                "SELECT version, balance FROM accounts WHERE account_id = $1", account
            )
        finally:
            await conn.close()
    assert row is not None
    assert (row["version"], str(row["balance"])) == (1, "5.00")
