"""Snapshots over the real PostgreSQL: a stream loads from its newest snapshot and the events
after it; a snapshot taken by other code, or changed outside the service, is ignored and
replaced, never trusted; a snapshot that cannot be written loses no command; and a service
whose store holds events no upcaster chain can read refuses to start."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeAlias

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from bank_accounts.account import BANK_ACCOUNT, INITIAL, AccountState
from bank_accounts.app import create_app as accounts_app
from bank_accounts.settings import AccountsSettings
from bank_deploy.providers import Endpoints
from bank_shared.contracts.accounts import (
    ACCOUNT_EVENTS,
    AccountCommand,
    DepositMoney,
    OpenAccount,
    WithdrawMoney,
)
from bank_shared.contracts.actors import TELLER
from bank_shared.contracts.envelope import Envelope, to_json
from bank_shared.contracts.outcomes import CommandOutcome
from bank_shared.db import Connection
from bank_shared.eventstore.snapshots import (
    SnapshotRow,
    Snapshots,
    checksum,
    read_from_snapshots,
    write_snapshots,
)
from bank_shared.eventstore.store import PostgresStorage, UnreadableStoreError, read_streams
from bank_shared.eventstore.unit_of_work import EventStore, Stream
from bank_shared.topics import TopicSettings
from tests.support import (
    Database,
    TopicTap,
    caused_by,
    decide,
    envelope_for,
    eventually,
    fresh_topics,
    new_id,
    running,
    send,
)

pytestmark = pytest.mark.integration

EVERY = 5
CORPUS = Path(__file__).parents[1] / "fixtures" / "payloads"

Pool: TypeAlias = "asyncpg.Pool[Any]"


class WatchedStorage(PostgresStorage):
    """The accounts' tables, noting the streams read whole and each snapshot write tried;
    with `refuse_snapshots`, every snapshot write fails."""

    def __init__(self, pool: Pool, *, refuse_snapshots: bool = False) -> None:
        super().__init__(Database(pool))
        self.refuse_snapshots = refuse_snapshots
        self.read_whole: list[str] = []
        self.snapshot_writes = 0

    async def read_streams(self, stream_ids: Collection[str]) -> dict[str, list[Envelope]]:
        self.read_whole += stream_ids
        return await super().read_streams(stream_ids)

    async def write_snapshots(self, rows: Sequence[SnapshotRow]) -> None:
        self.snapshot_writes += 1
        if self.refuse_snapshots:
            raise OSError("no space left on device")
        await super().write_snapshots(rows)


def store_on(
    storage: WatchedStorage, topics: TopicSettings, every: int = EVERY
) -> EventStore[AccountState]:
    """The accounts' store with snapshots, keeping no state in memory: every batch reads."""
    return EventStore(
        storage,
        BANK_ACCOUNT,
        topics,
        events_topic=topics.account_events,
        known=0,
        snapshot_every=every,
    )


def snapshots_of(store: EventStore[AccountState]) -> Snapshots[AccountState]:
    assert store.snapshots is not None
    return store.snapshots


@contextlib.asynccontextmanager
async def writing_snapshots(
    store: EventStore[AccountState],
) -> AsyncIterator[asyncio.Task[None]]:
    """The store's snapshot writer running in the background, as the service runs it."""
    writer = asyncio.create_task(snapshots_of(store).write_forever(store.storage))
    try:
        yield writer
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)


async def history_of(pool: Pool, account: str) -> list[Envelope]:
    async with pool.acquire() as conn:
        return (await read_streams(conn, [account])).get(account, [])


async def snapshot_row(pool: Pool, account: str) -> SnapshotRow | None:
    row = await pool.fetchrow(
        "SELECT stream_id, version, fingerprint, state, checksum FROM snapshots"
        " WHERE stream_id = $1",
        account,
    )
    return SnapshotRow(**row) if row else None


async def snapshot_reaches(pool: Pool, account: str, version: int) -> None:
    """Wait until the background writer has saved the account's snapshot at `version`."""

    async def there() -> bool:
        row = await snapshot_row(pool, account)
        return row is not None and row.version == version

    await eventually(there, what=f"the snapshot of {account} at version {version}")


async def accepted_history(store: EventStore[AccountState], account: str, events: int) -> None:
    """An account with `events` events, one command a batch (so one version at a time), and a
    refused withdrawal now and then, which adds none."""
    commands: list[AccountCommand] = [
        OpenAccount(account_id=account, owner="Snap", initial_balance="10.00", owned_by=TELLER)
    ]
    for i in range(1, events):
        if i % 4 == 0:
            commands.append(WithdrawMoney(account_id=account, amount="1.25"))
        else:
            commands.append(DepositMoney(account_id=account, amount=f"{i}.10"))
        if i % 7 == 0:
            commands.append(WithdrawMoney(account_id=account, amount="100000.00"))
    for command in commands:
        [outcome] = await decide(store, command)
        refused = isinstance(command, WithdrawMoney) and command.amount > 1000
        assert outcome.status == ("rejected" if refused else "accepted"), outcome


async def snapshot_and_two_more(store: EventStore[AccountState], pool: Pool, account: str) -> None:
    """17 events, the newest snapshot at 15. It is saved before the last two are written: on a
    busy machine a load may fold the stream before the snapshot at 10 is saved and take one
    of its own, which, at 16, could land after the one at 15."""
    async with writing_snapshots(store):
        await accepted_history(store, account, 3 * EVERY)
        await snapshot_reaches(pool, account, 3 * EVERY)
        for amount in ("1.00", "2.00"):
            [outcome] = await decide(store, DepositMoney(account_id=account, amount=amount))
            assert outcome.status == "accepted", outcome


# --- (a) snapshot + tail ------------------------------------------------------------------


async def test_a_stream_loads_from_its_newest_snapshot_and_only_the_events_after_it(
    accounts_db: Pool, topics: TopicSettings
) -> None:
    account = new_id("tail")
    store = store_on(WatchedStorage(accounts_db), topics)
    await snapshot_and_two_more(store, accounts_db, account)
    events = await history_of(accounts_db, account)
    assert [e.stream_version for e in events] == list(range(1, 18))

    reading = WatchedStorage(accounts_db)
    reader = store_on(reading, topics)
    async with accounts_db.acquire() as conn:
        found = await read_from_snapshots(conn, [account], snapshots_of(reader).fingerprint)
    snapshot, tail = found[account]
    # The query returned the snapshot and the two events after it, not the 17.
    assert snapshot is not None
    assert (snapshot.version, snapshot.fingerprint) == (15, snapshots_of(reader).fingerprint)
    assert tail == events[15:]
    assert snapshots_of(reader).restore(snapshot) == BANK_ACCOUNT.fold(events[:15])

    loaded = (await reader.read([account]))[account]

    assert loaded == Stream(BANK_ACCOUNT.fold(events), 17)
    assert reading.read_whole == []  # the snapshot was used, the stream never read whole


# --- (b) another code's snapshot ----------------------------------------------------------


async def test_a_snapshot_taken_by_other_code_is_ignored_and_replaced(
    accounts_db: Pool, topics: TopicSettings
) -> None:
    account = new_id("older")
    await accepted_history(store_on(WatchedStorage(accounts_db), topics), account, 2 * EVERY + 1)
    events = await history_of(accounts_db, account)
    # An `evolve` that once ignored every event: its snapshots hold a state this code would
    # never have folded.
    older = Snapshots(INITIAL, lambda state, event: state, ACCOUNT_EVENTS, every=EVERY)
    wrong = AccountState(opened=True, balance=Decimal("1000000.00"))
    async with accounts_db.acquire() as conn:
        await write_snapshots(conn, [older.row(account, len(events), wrong)])

    reading = WatchedStorage(accounts_db)
    reader = store_on(reading, topics)
    current = snapshots_of(reader).fingerprint
    assert older.fingerprint != current
    async with accounts_db.acquire() as conn:
        snapshot, tail = (await read_from_snapshots(conn, [account], current))[account]
    assert snapshot is not None
    assert snapshot.fingerprint == older.fingerprint
    assert snapshots_of(reader).restore(snapshot) is None  # not trusted...
    assert tail == events  # ... and the query gave every event, from the first

    async with writing_snapshots(reader):
        loaded = (await reader.read([account]))[account]

        assert loaded == Stream(BANK_ACCOUNT.fold(events), 11)
        assert loaded.state != wrong
        assert reading.read_whole == []  # the query gave every event already

        # That load folded 11 events, more than 5: its own snapshot replaces the other one.
        async def replaced() -> bool:
            row = await snapshot_row(accounts_db, account)
            return row is not None and row.fingerprint == current

        await eventually(replaced, what="this code's snapshot in place of the older one")
    row = await snapshot_row(accounts_db, account)
    assert row is not None
    assert row.version == 11
    assert snapshots_of(reader).restore(row) == BANK_ACCOUNT.fold(events)


# --- (c) rows changed outside the service -------------------------------------------------


def _resealed(row: SnapshotRow, state: str) -> tuple[str, str]:
    """A new state with a checksum that matches it: as if this code had written it."""
    return state, checksum(row.stream_id, row.version, row.fingerprint, state)


def _tampered_balance(row: SnapshotRow) -> str:
    state = json.loads(row.state)
    assert state["balance"] != "999999.00"
    return json.dumps({**state, "balance": "999999.00"}, separators=(",", ":"))


Corruption = Callable[[Connection, SnapshotRow], Awaitable[object]]
UPDATE_STATE = "UPDATE snapshots SET state = $2 WHERE stream_id = $1"
UPDATE_SEALED = "UPDATE snapshots SET state = $2, checksum = $3 WHERE stream_id = $1"

CORRUPTIONS: dict[str, Corruption] = {
    "state not JSON": lambda conn, row: conn.execute(UPDATE_STATE, row.stream_id, "{not json"),
    "state not JSON, checksum matching": lambda conn, row: conn.execute(
        UPDATE_SEALED, row.stream_id, *_resealed(row, '{"opened": tru')
    ),
    # Would read as a new account (every field has a default) if it were trusted.
    "state of another shape": lambda conn, row: conn.execute(
        UPDATE_STATE, row.stream_id, '{"status":"completed","transfer_id":"t-1"}'
    ),
    "state of another shape, checksum matching": lambda conn, row: conn.execute(
        UPDATE_SEALED, row.stream_id, *_resealed(row, '{"opened":"maybe","balance":"lots"}')
    ),
    "balance changed in place": lambda conn, row: conn.execute(
        UPDATE_STATE, row.stream_id, _tampered_balance(row)
    ),
    # Trusted, it would fold versions 14 and 15 a second time.
    "version changed": lambda conn, row: conn.execute(
        "UPDATE snapshots SET version = version - 2 WHERE stream_id = $1", row.stream_id
    ),
    "checksum changed": lambda conn, row: conn.execute(
        "UPDATE snapshots SET checksum = md5(checksum) WHERE stream_id = $1", row.stream_id
    ),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
async def test_a_snapshot_changed_outside_the_service_is_ignored_and_replaced(
    accounts_db: Pool, topics: TopicSettings, corruption: str
) -> None:
    account = new_id("tampered")
    store = store_on(WatchedStorage(accounts_db), topics)
    await snapshot_and_two_more(store, accounts_db, account)
    events = await history_of(accounts_db, account)
    good = await snapshot_row(accounts_db, account)
    assert good is not None
    async with accounts_db.acquire() as conn:
        await CORRUPTIONS[corruption](conn, good)
    assert await snapshot_row(accounts_db, account) != good

    reading = WatchedStorage(accounts_db)
    reader = store_on(reading, topics)
    async with writing_snapshots(reader):
        loaded = (await reader.read([account]))[account]

        assert loaded == Stream(BANK_ACCOUNT.fold(events), 17)
        assert reading.read_whole == [account]  # not trusted: read from its first event

        await snapshot_reaches(accounts_db, account, 17)  # a fresh one in its place
    row = await snapshot_row(accounts_db, account)
    assert row is not None
    assert snapshots_of(reader).restore(row) == BANK_ACCOUNT.fold(events)


# --- (d) a snapshot that cannot be written ------------------------------------------------

REFUSE_SNAPSHOTS = """
CREATE FUNCTION refuse_snapshots() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'snapshots are refused in this test'; END $$;
CREATE TRIGGER refuse_snapshots BEFORE INSERT OR UPDATE ON snapshots
  FOR EACH ROW EXECUTE FUNCTION refuse_snapshots();
"""


@pytest.mark.parametrize("refused_by", ["storage", "database"])
async def test_a_snapshot_that_cannot_be_written_loses_no_command(
    accounts_db: Pool, topics: TopicSettings, refused_by: str
) -> None:
    storage = WatchedStorage(accounts_db, refuse_snapshots=refused_by == "storage")
    if refused_by == "database":
        await accounts_db.execute(REFUSE_SNAPSHOTS)
    store = store_on(storage, topics, every=2)
    account = new_id("unsnapped")
    commands: list[AccountCommand] = [
        OpenAccount(
            account_id=account, owner="Unsnapped", initial_balance="10.00", owned_by=TELLER
        ),
        DepositMoney(account_id=account, amount="5.00"),
        WithdrawMoney(account_id=account, amount="3.00"),
        WithdrawMoney(account_id=account, amount="100.00"),
        DepositMoney(account_id=account, amount="1.00"),
        DepositMoney(account_id=account, amount="0.50"),
    ]
    async with writing_snapshots(store) as writer:
        answers: list[CommandOutcome] = []
        for command in commands:
            answers += await decide(store, command)
        await eventually(lambda: storage.snapshot_writes >= 1, what="a snapshot write")

        assert [(a.status, a.version, a.balance) for a in answers] == [
            ("accepted", 1, Decimal("10.00")),
            ("accepted", 2, Decimal("15.00")),
            ("accepted", 3, Decimal("12.00")),
            ("rejected", 3, None),
            ("accepted", 4, Decimal("13.00")),
            ("accepted", 5, Decimal("13.50")),
        ]
        events = await history_of(accounts_db, account)
        assert [e.type for e in events] == [
            "AccountOpened",
            "MoneyDeposited",
            "MoneyWithdrawn",
            "MoneyDeposited",
            "MoneyDeposited",
        ]
        assert await snapshot_row(accounts_db, account) is None
        assert snapshots_of(store).written == 0
        assert (await store.read([account]))[account] == Stream(BANK_ACCOUNT.fold(events), 5)

        # The writer lives on: once writes work again, the next snapshot is written.
        storage.refuse_snapshots = False
        await accounts_db.execute("DROP TRIGGER IF EXISTS refuse_snapshots ON snapshots")
        [answer] = await decide(store, DepositMoney(account_id=account, amount="0.25"))
        assert (answer.version, answer.balance) == (6, Decimal("13.75"))

        await snapshot_reaches(accounts_db, account, 6)
        assert not writer.done()
    row = await snapshot_row(accounts_db, account)
    assert row is not None
    assert snapshots_of(store).restore(row) == AccountState(
        opened=True, owned_by=TELLER, balance=Decimal("13.75")
    )


# --- (e) the start-up check ---------------------------------------------------------------


def from_corpus(message_type: str, version: int, account: str, stream_version: int) -> Envelope:
    """An event of the corpus (tests/fixtures/payloads) as stored, placed in `account`."""
    stored = Envelope.model_validate_json((CORPUS / f"{message_type}.v{version}.json").read_text())
    return stored.model_copy(
        update={
            "message_id": uuid.uuid4(),
            "stream_id": account,
            "stream_version": stream_version,
            "payload": {**stored.payload, "account_id": account},
        }
    )


async def insert_events(pool: Pool, envelopes: Sequence[Envelope]) -> None:
    """Rows as an older (or newer) version of the service wrote them."""
    await pool.executemany(
        "INSERT INTO events (stream_id, version, event_id, event_type, schema_version, envelope)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        [
            (e.stream_id, e.stream_version, e.message_id, e.type, e.schema_version, to_json(e))
            for e in envelopes
        ],
    )


def old_account(account: str) -> list[Envelope]:
    """Opened with 100.00 (v1), 25.50 deposited (v1) and 25.50 withdrawn (v2)."""
    return [
        from_corpus("AccountOpened", 1, account, 1),
        from_corpus("MoneyDeposited", 1, account, 2),
        from_corpus("MoneyWithdrawn", 2, account, 3),
    ]


def accounts_settings_on(isolated: Endpoints, topics: TopicSettings) -> AccountsSettings:
    return AccountsSettings(
        kafka=isolated.kafka,
        pg=isolated.pg,
        topics=topics,
        consumer_group=f"accounts-{uuid.uuid4().hex[:8]}",
        relay_poll_interval=0.2,
        snapshot_every=2,
    )


@pytest.mark.parametrize(
    ("event_type", "version", "named"),
    [
        ("MoneyDeposited", 9, "MoneyDeposited schema version 9 was written by newer code"),
        ("MoneyDeposited", 0, "no upcaster from MoneyDeposited schema version 0 to 1"),
        ("MoneyTeleported", 1, "MoneyTeleported is a type this code does not know"),
    ],
)
async def test_the_accounts_service_refuses_to_start_on_events_it_cannot_read(
    isolated: Endpoints, accounts_db: Pool, event_type: str, version: int, named: str
) -> None:
    account = new_id("unreadable")
    unreadable = from_corpus("MoneyDeposited", 2, account, 4)
    unreadable = unreadable.model_copy(update={"type": event_type, "schema_version": version})
    await insert_events(accounts_db, [*old_account(account), unreadable])
    settings = accounts_settings_on(isolated, fresh_topics("unreadable"))

    with pytest.raises(UnreadableStoreError, match=named) as refused:
        async with running(accounts_app(settings)):
            pytest.fail("the accounts service started on a store it cannot read")

    # Only that row is named: the v1 and v2 rows before it are read through the chain.
    assert "AccountOpened" not in str(refused.value)
    assert "MoneyWithdrawn" not in str(refused.value)


async def test_the_accounts_service_starts_on_v1_and_v2_events_and_decides_from_them(
    isolated: Endpoints, accounts_db: Pool, producer: AIOKafkaProducer
) -> None:
    account = new_id("old")
    await insert_events(accounts_db, old_account(account))
    topics = fresh_topics("readable")

    async with running(accounts_app(accounts_settings_on(isolated, topics))):
        outcomes = await TopicTap(isolated.kafka, topics.command_outcomes).start()
        try:
            withdraw = envelope_for(WithdrawMoney(account_id=account, amount="100.00"))
            await send(producer, topics.account_commands, account, withdraw)
            [answer] = await outcomes.wait_for(caused_by(withdraw.message_id), within=60)
        finally:
            await outcomes.stop()

    # 100.00 + 25.50 - 25.50, read through the upcasters: all of it can be withdrawn.
    assert answer.message == CommandOutcome(
        command_id=withdraw.message_id,
        command_type="WithdrawMoney",
        stream_id=account,
        status="accepted",
        version=4,
        balance=Decimal("0.00"),
    )
