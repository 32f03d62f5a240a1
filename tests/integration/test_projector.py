"""The projector over the real broker and databases: the read model follows the event
stores, ignores redelivered events, and a rebuild gives it back row for row."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from pydantic import ValidationError

from bank_accounts.account import AccountState
from bank_deploy.providers import Endpoints
from bank_projector.projections import StreamGapError, project
from bank_projector.rebuild import rebuild
from bank_projector.settings import ProjectorSettings
from bank_shared.contracts.accounts import (
    AccountOpened,
    DepositMoney,
    MoneyDeposited,
    OpenAccount,
    WithdrawMoney,
)
from bank_shared.contracts.actors import BANK_TELLER, TELLER
from bank_shared.contracts.envelope import Envelope, Message, read_payload, seal_events, to_bytes
from bank_shared.contracts.transfers import StartTransfer, TransferStarted
from bank_shared.db import Connection
from bank_shared.eventstore.migrate import migrate
from bank_shared.eventstore.store import UnreadableStoreError
from bank_shared.eventstore.unit_of_work import EventStore
from bank_shared.service import Platform
from bank_shared.settings import PostgresSettings
from bank_shared.topics import TopicSettings
from tests.read_model import dump_read_model, expected_read_model, history
from tests.support import account_store, decide, envelope_for, eventually, new_id, send

pytestmark = pytest.mark.integration


async def read_model_settles(infra: Endpoints, within: float = 60) -> None:
    """Wait until the read model is exactly the fold of both event stores."""

    async def equal() -> bool:
        return await dump_read_model(infra.pg) == await expected_read_model(infra.pg)

    await eventually(equal, within=within, what="the read model to match the event stores")


async def account_row(infra: Endpoints, account_id: str) -> asyncpg.Record | None:
    conn = await asyncpg.connect(infra.pg.dsn(infra.pg.read_db))
    try:
        return await conn.fetchrow("SELECT * FROM accounts WHERE account_id = $1", account_id)
    finally:
        await conn.close()


async def test_the_read_model_shows_balances_history_and_transfer_statuses(
    infra: Endpoints,
    accounts: Platform,
    saga: Platform,
    projector: Platform,
    topics: TopicSettings,
    producer: AIOKafkaProducer,
) -> None:
    store = account_store(accounts.pool, topics)
    alice, bob = new_id("alice"), new_id("bob")
    for command in (
        OpenAccount(account_id=alice, owner="Alice", initial_balance="100.00", owned_by=TELLER),
        OpenAccount(account_id=bob, owner="Bob", initial_balance="50.00", owned_by=TELLER),
        DepositMoney(account_id=alice, amount="10.00"),
        WithdrawMoney(account_id=bob, amount="5.00"),
    ):
        await decide(store, command)
    transfer_id = new_id("transfer")
    await send(
        producer,
        topics.transfer_commands,
        transfer_id,
        envelope_for(
            StartTransfer(
                transfer_id=transfer_id, source_account_id=alice, target_account_id=bob, amount="30"
            )
        ),
    )

    async def transfer_projected() -> bool:
        # Account and transfer events are separate topics, projected independently.
        row = await account_row(infra, bob)
        conn = await asyncpg.connect(infra.pg.dsn(infra.pg.read_db))
        try:
            status = await conn.fetchval(
                "SELECT status FROM transfers WHERE transfer_id = $1", transfer_id
            )
        finally:
            await conn.close()
        return row is not None and row["version"] == 3 and status == "completed"

    await eventually(transfer_projected, what="the credit to reach the read model")
    alice_row, bob_row = await account_row(infra, alice), await account_row(infra, bob)
    assert alice_row is not None
    assert bob_row is not None
    assert (alice_row["owner"], alice_row["balance"], alice_row["version"]) == (
        "Alice",
        Decimal("80.00"),
        3,
    )
    assert bob_row["balance"] == Decimal("75.00")
    conn = await asyncpg.connect(infra.pg.dsn(infra.pg.read_db))
    try:
        activity = await conn.fetch(
            "SELECT version, type, amount::text, balance_after::text, transfer_id"
            " FROM account_activity WHERE account_id = $1 ORDER BY version DESC",
            alice,
        )
        transfer = await conn.fetchrow(
            "SELECT * FROM transfers WHERE transfer_id = $1", transfer_id
        )
    finally:
        await conn.close()
    assert [tuple(r) for r in activity] == [
        (3, "MoneyWithdrawn", "30.00", "80.00", transfer_id),
        (2, "MoneyDeposited", "10.00", "110.00", None),
        (1, "AccountOpened", "100.00", "100.00", None),
    ]
    assert transfer is not None
    assert (transfer["status"], transfer["finished_at"] is not None) == ("completed", True)


async def test_every_event_delivered_twice_leaves_the_read_model_unchanged(
    infra: Endpoints,
    accounts: Platform,
    saga: Platform,
    projector: Platform,
    topics: TopicSettings,
    producer: AIOKafkaProducer,
) -> None:
    await read_model_settles(infra)
    before = await dump_read_model(infra.pg)
    # Deliver the whole history of both stores again, in stream order, as a relay that died
    # before marking its rows would.
    for database, topic in (
        (infra.pg.accounts_db, topics.account_events),
        (infra.pg.transfers_db, topics.transfer_events),
    ):
        for stream_id, events in (await history(infra.pg, database)).items():
            for envelope in events:
                await producer.send(topic, value=to_bytes(envelope), key=stream_id.encode())
    await producer.flush()
    # A barrier behind the duplicates on every partition of both topics: once the probes are
    # projected, so are the duplicates before them.
    account_probes = keys_for_every_partition("probe", topics.partitions)
    transfer_probes = keys_for_every_partition("probe-t", topics.partitions)
    store = account_store(accounts.pool, topics)
    for probe in account_probes:
        command = OpenAccount(account_id=probe, owner="Probe", owned_by=TELLER)
        await decide(store, command)
    for probe in transfer_probes:  # between accounts that do not exist: fails at once
        await send(
            producer,
            topics.transfer_commands,
            probe,
            envelope_for(
                StartTransfer(
                    transfer_id=probe,
                    source_account_id="nobody-a",
                    target_account_id="nobody-b",
                    amount="1",
                )
            ),
        )

    async def probes_projected() -> bool:
        after = await dump_read_model(infra.pg)
        accounts_seen = {row[0] for row in after["accounts"]}
        failed = {row[0] for row in after["transfers"] if row[4] == "failed"}
        return set(account_probes) <= accounts_seen and set(transfer_probes) <= failed

    await eventually(probes_projected, what="the probes behind the duplicates")
    after = await dump_read_model(infra.pg)
    probes = {*account_probes, *transfer_probes}
    assert {k: [r for r in rows if r[0] not in probes] for k, rows in after.items()} == before


async def a_transfer_between_new_accounts(
    store: EventStore[AccountState],
    producer: AIOKafkaProducer,
    topics: TopicSettings,
    names: tuple[str, str],
    description: str | None = None,
) -> tuple[str, str, str]:
    """Two new accounts (the source with 100.00, the target with a deposit of its own) and a
    transfer of 30.00 between them, sent to the saga: (source, target, transfer id)."""
    source, target = new_id(names[0]), new_id(names[1])
    for command in (
        OpenAccount(
            account_id=source, owner=names[0].title(), initial_balance="100.00", owned_by=TELLER
        ),
        # A customer's: the read model (and a rebuild) must keep who owns it.
        OpenAccount(account_id=target, owner=names[1].title(), owned_by=new_id(names[1])),
        DepositMoney(account_id=target, amount="5.00"),
    ):
        await decide(store, command)
    transfer_id = new_id("transfer")
    start = StartTransfer(
        transfer_id=transfer_id,
        source_account_id=source,
        target_account_id=target,
        amount="30",
        description=description,
    )
    await send(producer, topics.transfer_commands, transfer_id, envelope_for(start))
    return source, target, transfer_id


async def test_a_transfer_s_description_is_on_its_row_and_on_both_accounts_activity(
    infra: Endpoints,
    accounts: Platform,
    saga: Platform,
    projector: Platform,
    topics: TopicSettings,
    producer: AIOKafkaProducer,
) -> None:
    alice, bob, transfer_id = await a_transfer_between_new_accounts(
        account_store(accounts.pool, topics),
        producer,
        topics,
        ("alice", "bob"),
        description="Rent for March",
    )

    async def projected() -> bool:
        conn = await asyncpg.connect(infra.pg.dsn(infra.pg.read_db))
        try:
            status = await conn.fetchval(
                "SELECT status FROM transfers WHERE transfer_id = $1", transfer_id
            )
            credited = await conn.fetchval(
                "SELECT count(*) FROM account_activity WHERE account_id = $1", bob
            )
        finally:
            await conn.close()
        return bool(status == "completed" and credited == 3)

    await eventually(projected, what="the transfer and the credit to reach the read model")
    conn = await asyncpg.connect(infra.pg.dsn(infra.pg.read_db))
    try:
        described = await conn.fetchval(
            "SELECT description FROM transfers WHERE transfer_id = $1", transfer_id
        )
        activity = await conn.fetch(
            "SELECT account_id, version, type, description FROM account_activity"
            " WHERE account_id = ANY($1) ORDER BY account_id = $2 DESC, version",
            [alice, bob],
            alice,
        )
    finally:
        await conn.close()
    assert described == "Rent for March"
    assert [tuple(r) for r in activity] == [
        (alice, 1, "AccountOpened", None),
        (alice, 2, "MoneyWithdrawn", "Rent for March"),
        (bob, 1, "AccountOpened", None),
        (bob, 2, "MoneyDeposited", None),  # a plain deposit has none
        (bob, 3, "MoneyDeposited", "Rent for March"),
    ]


# Fields added to payloads after their version 1.
LATER_FIELDS = ("description", "owned_by", "requested_by")


def as_version_1(envelopes: list[Envelope]) -> list[Envelope]:
    """The envelopes as code before descriptions and owners wrote them: schema 1, no such
    fields."""
    return [
        e.model_copy(
            update={
                "schema_version": 1,
                "payload": {k: v for k, v in e.payload.items() if k not in LATER_FIELDS},
            }
        )
        for e in envelopes
    ]


async def test_events_written_before_descriptions_are_projected_with_none(
    infra: Endpoints, projector: Platform
) -> None:
    account, transfer_id = new_id("old"), new_id("old-transfer")
    now = datetime.now(UTC)
    old_account = as_version_1(
        seal_events(
            [
                AccountOpened(
                    account_id=account,
                    owner="Old",
                    initial_balance="9",
                    balance_after="9",
                    owned_by=TELLER,
                ),
                MoneyDeposited(
                    account_id=account, amount="1", balance_after="10", description=None
                ),
            ],
            cause=uuid.uuid4(),
            correlation_id=uuid.uuid4(),
            stream_id=account,
            after_version=0,
            occurred_at=now,
        )
    )
    old_transfer = as_version_1(
        seal_events(
            [
                TransferStarted(
                    transfer_id=transfer_id,
                    source_account_id=account,
                    target_account_id="elsewhere",
                    amount="1",
                    description=None,
                    requested_by=BANK_TELLER,
                )
            ],
            cause=uuid.uuid4(),
            correlation_id=uuid.uuid4(),
            stream_id=transfer_id,
            after_version=0,
            occurred_at=now,
        )
    )
    assert [e.schema_version for e in (*old_account, *old_transfer)] == [1, 1, 1]
    conn = await asyncpg.connect(infra.pg.dsn(infra.pg.read_db))
    # Rolled back at the end: rows of streams no store holds would be a read model that is
    # not the fold of the stores for the tests after this one.
    undone = conn.transaction()
    await undone.start()
    try:
        events = [(e, read_payload(e)) for e in (*old_account, *old_transfer)]
        assert await project(conn, events) == 3
        activity = await conn.fetch(
            "SELECT version, description FROM account_activity WHERE account_id = $1"
            " ORDER BY version",
            account,
        )
        transfer = await conn.fetchrow(
            "SELECT amount::text, description FROM transfers WHERE transfer_id = $1", transfer_id
        )
    finally:
        await undone.rollback()
        await conn.close()
    assert [tuple(r) for r in activity] == [(1, None), (2, None)]
    assert transfer is not None
    assert tuple(transfer) == ("1.00", None)


def keys_for_every_partition(prefix: str, partitions: int) -> list[str]:
    """One key per partition, by the producer's default partitioner (murmur2)."""
    found: dict[int, str] = {}
    while len(found) < partitions:
        key = new_id(prefix)
        found.setdefault((murmur2(key.encode()) & 0x7FFFFFFF) % partitions, key)
    return list(found.values())


async def test_after_200_random_commands_the_read_model_equals_the_fold_of_the_stores(
    infra: Endpoints,
    accounts: Platform,
    saga: Platform,
    projector: Platform,
    topics: TopicSettings,
    producer: AIOKafkaProducer,
) -> None:
    rng = random.Random(20261126)
    names = [new_id(f"r{i}") for i in range(8)]
    commands: list[tuple[str, str, Message]] = [
        (
            topics.account_commands,
            n,
            OpenAccount(account_id=n, owner=n, initial_balance="100", owned_by=TELLER),
        )
        for n in names[:6]  # two names are never opened: operations on them are refused
    ]
    while len(commands) < 200:
        kind = rng.choice(["deposit", "withdraw", "transfer"])
        amount = f"{rng.randint(1, 6000) / 100:.2f}"
        source, target = rng.sample(names, 2)
        if kind == "deposit":
            commands.append(
                (topics.account_commands, source, DepositMoney(account_id=source, amount=amount))
            )
        elif kind == "withdraw":
            commands.append(
                (topics.account_commands, source, WithdrawMoney(account_id=source, amount=amount))
            )
        else:
            transfer_id = new_id("t")
            commands.append(
                (
                    topics.transfer_commands,
                    transfer_id,
                    StartTransfer(
                        transfer_id=transfer_id,
                        source_account_id=source,
                        target_account_id=target,
                        amount=amount,
                    ),
                )
            )
    sent: list[Envelope] = []
    for topic, key, command in commands:
        envelope = envelope_for(command)
        sent.append(envelope)
        await producer.send(topic, value=to_bytes(envelope), key=key.encode())
    await producer.flush()

    async def all_transfers_finished() -> bool:
        streams = await history(infra.pg, infra.pg.transfers_db)
        started = [e for e in sent if e.type == "StartTransfer"]
        return all(
            (events := streams.get(str(e.payload["transfer_id"])))
            and events[-1].type in ("TransferCompleted", "TransferFailed")
            for e in started
        )

    await eventually(all_transfers_finished, within=120, what="every transfer to finish")
    await read_model_settles(infra)


async def test_a_rebuild_while_the_system_runs_gives_back_the_same_read_model(
    infra: Endpoints,
    accounts: Platform,
    saga: Platform,
    projector: Platform,
    projector_settings: ProjectorSettings,
    topics: TopicSettings,
    producer: AIOKafkaProducer,
) -> None:
    # A history of its own (both stores), so the test proves something when run alone.
    _, _, transfer_id = await a_transfer_between_new_accounts(
        account_store(accounts.pool, topics), producer, topics, ("carol", "dave")
    )
    await read_model_settles(infra)
    before = await dump_read_model(infra.pg)
    assert any(row[0] == transfer_id and row[4] == "completed" for row in before["transfers"])
    assert any(row[-1] != TELLER for row in before["accounts"])  # owned_by, not only defaults

    report = await rebuild(projector_settings)

    assert report.events == len(before["account_activity"]) + sum(
        row[9]
        for row in before["transfers"]  # the version column
    )
    assert await dump_read_model(infra.pg) == before


async def test_an_event_ahead_of_its_stream_is_refused_not_skipped(
    infra: Endpoints, projector: Platform
) -> None:
    """A gap (version 3 after version 1) must never be applied as if 2 had happened: the
    batch is refused (and will come again), not silently half-applied."""
    account = new_id("gap")
    opened = seal_events(
        [
            AccountOpened(
                account_id=account,
                owner="Gap",
                initial_balance="1",
                balance_after="1",
                owned_by=TELLER,
            )
        ],
        cause=uuid.uuid4(),
        correlation_id=uuid.uuid4(),
        stream_id=account,
        after_version=0,
        occurred_at=datetime.now(UTC),
    )
    ahead = seal_events(
        [MoneyDeposited(account_id=account, amount="1", balance_after="3", description=None)],
        cause=uuid.uuid4(),
        correlation_id=uuid.uuid4(),
        stream_id=account,
        after_version=2,
        occurred_at=datetime.now(UTC),
    )
    conn = await asyncpg.connect(infra.pg.dsn(infra.pg.read_db))
    try:
        with pytest.raises(StreamGapError, match="expected 2"):
            async with conn.transaction():
                await project(conn, [(e, read_payload(e)) for e in (*opened, *ahead)])
        assert (
            await conn.fetchval("SELECT count(*) FROM accounts WHERE account_id = $1", account) == 0
        )
    finally:
        await conn.close()


class ReadsFirstWritesLast:
    """A connection whose projector reads before the other instance does and writes after it
    has finished: the interleaving a rebalance can produce, made certain."""

    def __init__(self, conn: asyncpg.Connection[Any]) -> None:
        self.conn = conn
        self.has_read = asyncio.Event()
        self.may_write = asyncio.Event()

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        rows = await self.conn.fetch(query, *args)
        self.has_read.set()
        return rows

    async def execute(self, query: str, *args: object) -> str:
        await self.may_write.wait()
        return await self.conn.execute(query, *args)


async def test_two_instances_projecting_the_same_stream_at_once_never_undo_each_other(
    infra: Endpoints, projector: Platform
) -> None:
    """A rebalance can hand a partition to a second projector while the first still applies a
    batch of it. Here the first has read the row and applies the first 3 events of a stream
    after the second applied all 11: the row stays at the last version, with every activity
    row."""
    read_dsn = infra.pg.dsn(infra.pg.read_db)
    behind_conn, ahead = await asyncpg.connect(read_dsn), await asyncpg.connect(read_dsn)
    try:
        account = new_id("raced")
        events = [
            *seal_events(
                [
                    AccountOpened(
                        account_id=account,
                        owner="Race",
                        initial_balance="0",
                        balance_after="0",
                        owned_by=TELLER,
                    )
                ],
                cause=uuid.uuid4(),
                correlation_id=uuid.uuid4(),
                stream_id=account,
                after_version=0,
                occurred_at=datetime.now(UTC),
            ),
            *seal_events(
                [
                    MoneyDeposited(
                        account_id=account, amount="1", balance_after=str(n), description=None
                    )
                    for n in range(1, 11)
                ],
                cause=uuid.uuid4(),
                correlation_id=uuid.uuid4(),
                stream_id=account,
                after_version=1,
                occurred_at=datetime.now(UTC),
            ),
        ]
        batch = [(e, read_payload(e)) for e in events]
        behind = ReadsFirstWritesLast(behind_conn)

        async def second_instance() -> None:
            await behind.has_read.wait()
            await project(ahead, batch)
            behind.may_write.set()

        applied_behind, _ = await asyncio.gather(
            project(cast(Connection, behind), batch[:3]), second_instance()
        )

        assert applied_behind == 3  # it did write, from the row it had read
        row = await ahead.fetchrow(
            "SELECT balance, version FROM accounts WHERE account_id = $1", account
        )
        assert row is not None
        assert (row["balance"], row["version"]) == (Decimal("10.00"), 11)
        activity = await ahead.fetch(
            "SELECT version, balance_after FROM account_activity WHERE account_id = $1"
            " ORDER BY version",
            account,
        )
        assert [(r["version"], r["balance_after"]) for r in activity] == [
            (n + 1, Decimal(n)) for n in range(11)
        ]
    finally:
        await behind_conn.close()
        await ahead.close()


@contextlib.asynccontextmanager
async def brand_new_databases(base: PostgresSettings) -> AsyncIterator[PostgresSettings]:
    """The accounts, transfers and read databases as new, empty ones, dropped afterwards."""
    names = [f"rebuild_{uuid.uuid4().hex[:8]}_{i}" for i in range(3)]
    admin = await asyncpg.connect(base.dsn("postgres"))
    try:
        for name in names:
            await admin.execute(f'CREATE DATABASE "{name}"')
        yield base.model_copy(
            update={"accounts_db": names[0], "transfers_db": names[1], "read_db": names[2]}
        )
    finally:
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_a_rebuild_before_any_service_ran_replays_nothing_and_fails_nothing(
    infra: Endpoints,
) -> None:
    """A new bank: neither event store exists yet (their services create them when they first
    start). The rebuild has no history to replay; it must say 0 events, not crash."""
    async with brand_new_databases(infra.pg) as pg:
        report = await rebuild(ProjectorSettings(pg=pg))
        assert report.events == 0
        empty: dict[str, list[object]] = {"accounts": [], "account_activity": [], "transfers": []}
        assert await dump_read_model(pg) == empty


async def read_model_with_a_row(pg: PostgresSettings) -> asyncpg.Connection:
    """A connection to a migrated read database holding one account row, which a rebuild that
    failed must leave in place."""
    read = await asyncpg.connect(pg.dsn(pg.read_db))
    await migrate(read, "bank_projector.migrations")
    await read.execute(
        "INSERT INTO accounts (account_id, owner, balance, version, opened_at, updated_at)"
        " VALUES ('kept', 'Kept', 7, 1, now(), now())"
    )
    return read


async def test_a_rebuild_that_fails_part_way_leaves_the_read_model_as_it_was(
    infra: Endpoints,
) -> None:
    """A store whose sixth event the projector cannot read, after five it has already written
    (batches of two, so a write is in flight when the bad one is parsed): the rebuild fails
    with the reason, and its emptying and writing are rolled back."""
    async with brand_new_databases(infra.pg) as pg:
        insert = (
            "INSERT INTO events (stream_id, version, event_id, event_type, schema_version,"
            " envelope) VALUES ($1, 1, $2, 'AccountOpened', 1, $3)"
        )
        store = await asyncpg.connect(pg.dsn(pg.accounts_db))
        try:
            await migrate(store, "bank_shared.eventstore.migrations")
            for i in range(1, 6):
                opened = AccountOpened(
                    account_id=f"broken-{i}",
                    owner="B",
                    initial_balance="1",
                    balance_after="1",
                    owned_by=TELLER,
                )
                (envelope,) = seal_events(
                    [opened],
                    cause=uuid.uuid4(),
                    correlation_id=uuid.uuid4(),
                    stream_id=opened.account_id,
                    after_version=0,
                    occurred_at=datetime.now(UTC),
                )
                await store.execute(
                    insert, opened.account_id, envelope.message_id, to_bytes(envelope).decode()
                )
            await store.execute(insert, "broken-6", uuid.uuid4(), '{"not": "an envelope"}')
        finally:
            await store.close()
        read = await read_model_with_a_row(pg)
        await read.close()
        before = await dump_read_model(pg)

        with pytest.raises(ValidationError, match="message_id"):
            await rebuild(ProjectorSettings(pg=pg, rebuild_batch=2))

        assert await dump_read_model(pg) == before


async def test_a_rebuild_refuses_a_store_it_cannot_read_before_it_touches_the_read_model(
    infra: Endpoints,
) -> None:
    """An event of a version no upcaster chain reaches: the rebuild refuses, naming it, before
    it locks or empties anything; a reader holding the read tables does not even wait."""
    async with brand_new_databases(infra.pg) as pg:
        store = await asyncpg.connect(pg.dsn(pg.accounts_db))
        try:
            await migrate(store, "bank_shared.eventstore.migrations")
            await store.execute(
                "INSERT INTO events (stream_id, version, event_id, event_type, schema_version,"
                " envelope) VALUES ('future', 1, $1, 'MoneyDeposited', 9, '{}')",
                uuid.uuid4(),
            )
        finally:
            await store.close()
        read = await read_model_with_a_row(pg)
        try:
            before = await dump_read_model(pg)
            async with read.transaction():
                # A reader in the middle of a read: a rebuild that locked the tables would
                # wait for it, and time out here.
                await read.execute("LOCK TABLE accounts IN ACCESS SHARE MODE")
                with pytest.raises(UnreadableStoreError, match="MoneyDeposited schema version 9"):
                    await asyncio.wait_for(rebuild(ProjectorSettings(pg=pg)), timeout=60)
        finally:
            await read.close()
        assert await dump_read_model(pg) == before
