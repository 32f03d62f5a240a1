"""Events written at schema version 1 (shaped as the corpus's v1 files: no `description`, no
`owned_by`, no `requested_by`) build the same read model as the same history written at the
current versions with no description, by and for the teller: through the live projector, which
reads them from the topics, and through a rebuild, which reads them from the event stores."""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from bank_deploy.postgres import create_databases
from bank_deploy.providers import Endpoints
from bank_projector.app import create_app as projector_app
from bank_projector.rebuild import rebuild
from bank_projector.settings import ProjectorSettings
from bank_shared.contracts.accounts import AccountOpened, MoneyDeposited, MoneyWithdrawn
from bank_shared.contracts.actors import BANK_TELLER, TELLER
from bank_shared.contracts.envelope import Envelope, Message, current_versions, seal, to_json
from bank_shared.contracts.transfers import (
    TransferCompleted,
    TransferCreditRefused,
    TransferDebited,
    TransferFailed,
    TransferStarted,
)
from bank_shared.eventstore.migrate import migrate
from bank_shared.service import EVENT_STORE
from bank_shared.settings import PostgresSettings
from bank_shared.topics import TopicSettings
from tests.conftest import drop_databases, session_databases
from tests.support import eventually, fresh_topics, new_id, running, send

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).parents[1] / "fixtures" / "payloads"
# The fields the versions after 1 added to the events of the history.
ADDED_SINCE_V1 = {
    "MoneyDeposited": {"description"},
    "MoneyWithdrawn": {"description"},
    "TransferStarted": {"description", "requested_by"},
    "AccountOpened": {"owned_by"},
}

ReadModel = dict[str, list[dict[str, Any]]]


@dataclasses.dataclass(frozen=True)
class History:
    """Both stores' events: the accounts' and the transfers'."""

    accounts: list[Envelope]
    transfers: list[Envelope]


def the_history(ids: dict[str, str], *, v1: bool) -> History:
    """Alice pays Bob 30.00 (completed) and Carol 5.00 (Carol has no account: refunded),
    written as version 1 of the events or as the current versions, with the same ids and
    times either way."""
    alice, bob, t1, t2 = ids["alice"], ids["bob"], ids["t1"], ids["t2"]
    accounts: list[tuple[str, Message]] = [
        (alice, opened(alice, "100.00")),
        (bob, opened(bob, "50.00")),
        (alice, deposited(alice, "10.00", "110.00")),
        (alice, withdrawn(alice, "30.00", "80.00", t1)),
        (bob, deposited(bob, "30.00", "80.00", t1)),
        (alice, withdrawn(alice, "5.00", "75.00", t2)),
        (alice, deposited(alice, "5.00", "80.00", t2)),  # the refund
    ]
    refused = "target_account_not_found"
    transfers: list[tuple[str, Message]] = [
        (t1, started(t1, alice, bob, "30.00")),
        (t2, started(t2, alice, ids["carol"], "5.00")),
        (t1, TransferDebited(transfer_id=t1, source_account_id=alice, amount="30.00")),
        (t1, TransferCompleted(transfer_id=t1)),
        (t2, TransferDebited(transfer_id=t2, source_account_id=alice, amount="5.00")),
        (t2, TransferCreditRefused(transfer_id=t2, reason=refused)),
        (t2, TransferFailed(transfer_id=t2, reason=refused, refunded=True)),
    ]
    return History(sealed(accounts, v1=v1), sealed(transfers, v1=v1))


def opened(account: str, balance: str) -> AccountOpened:
    return AccountOpened(
        account_id=account,
        owner=account,
        owned_by=TELLER,
        initial_balance=balance,
        balance_after=balance,
    )


def deposited(
    account: str, amount: str, balance: str, transfer: str | None = None
) -> MoneyDeposited:
    return MoneyDeposited(
        account_id=account,
        amount=amount,
        balance_after=balance,
        transfer_id=transfer,
        description=None,
    )


def withdrawn(
    account: str, amount: str, balance: str, transfer: str | None = None
) -> MoneyWithdrawn:
    return MoneyWithdrawn(
        account_id=account,
        amount=amount,
        balance_after=balance,
        transfer_id=transfer,
        description=None,
    )


def started(transfer: str, source: str, target: str, amount: str) -> TransferStarted:
    return TransferStarted(
        transfer_id=transfer,
        source_account_id=source,
        target_account_id=target,
        amount=amount,
        description=None,
        requested_by=BANK_TELLER,
    )


def sealed(events: Sequence[tuple[str, Message]], *, v1: bool) -> list[Envelope]:
    """Envelopes numbered in each stream, one second apart; with `v1`, the payloads of the
    types later versions changed are as v1 wrote them."""
    started = datetime(2026, 1, 5, 8, 30, tzinfo=UTC)
    versions: dict[str, int] = {}
    envelopes = []
    for n, (stream_id, event) in enumerate(events):
        versions[stream_id] = versions.get(stream_id, 0) + 1
        envelope = seal(
            event,
            message_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{stream_id}/{versions[stream_id]}"),
            correlation_id=uuid.uuid5(uuid.NAMESPACE_URL, stream_id),
            causation_id=None,
            occurred_at=started + timedelta(seconds=n),
            stream_id=stream_id,
            stream_version=versions[stream_id],
        )
        envelopes.append(as_v1(envelope) if v1 else envelope)
    return envelopes


def as_v1(envelope: Envelope) -> Envelope:
    if envelope.type not in ADDED_SINCE_V1:
        return envelope
    added = ADDED_SINCE_V1[envelope.type]
    payload = {k: v for k, v in envelope.payload.items() if k not in added}
    corpus = Envelope.model_validate_json((CORPUS / f"{envelope.type}.v1.json").read_text())
    assert set(payload) == set(corpus.payload)  # the shape v1 stored
    return envelope.model_copy(update={"schema_version": 1, "payload": payload})


# Every row and every column of the read model (descriptions too).
READ_MODEL = {
    "accounts": "SELECT * FROM accounts ORDER BY account_id",
    "account_activity": "SELECT * FROM account_activity ORDER BY account_id, version",
    "transfers": "SELECT * FROM transfers ORDER BY transfer_id",
    "parked_streams": "SELECT * FROM parked_streams ORDER BY stream_id",
}


async def dump(pg: PostgresSettings) -> ReadModel:
    conn = await asyncpg.connect(pg.dsn(pg.read_db))
    try:
        return {
            table: [dict(r) for r in await conn.fetch(sql)] for table, sql in READ_MODEL.items()
        }
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def databases_of_its_own(infra: Endpoints) -> AsyncIterator[PostgresSettings]:
    """The bank's databases under new names, the event stores created, dropped afterwards."""
    pg = session_databases(infra.pg)
    await create_databases(pg)
    try:
        for database in (pg.accounts_db, pg.transfers_db):
            conn = await asyncpg.connect(pg.dsn(database))
            try:
                await migrate(conn, EVENT_STORE)
            finally:
                await conn.close()
        yield pg
    finally:
        await drop_databases(pg)


async def store(pg: PostgresSettings, history: History) -> None:
    """The events in the two stores, as the services wrote them."""
    for database, events in (
        (pg.accounts_db, history.accounts),
        (pg.transfers_db, history.transfers),
    ):
        conn = await asyncpg.connect(pg.dsn(database))
        try:
            await conn.executemany(
                "INSERT INTO events (stream_id, version, event_id, event_type, schema_version,"
                " envelope) VALUES ($1, $2, $3, $4, $5, $6)",
                [
                    (
                        e.stream_id,
                        e.stream_version,
                        e.message_id,
                        e.type,
                        e.schema_version,
                        to_json(e),
                    )
                    for e in events
                ],
            )
        finally:
            await conn.close()


async def projected_live(
    infra: Endpoints, pg: PostgresSettings, producer: AIOKafkaProducer, history: History
) -> ReadModel:
    """The read model a projector builds from the history, sent on topics of its own."""
    topics: TopicSettings = fresh_topics("old-payloads")
    run = uuid.uuid4().hex[:8]
    settings = ProjectorSettings(
        kafka=infra.kafka,
        pg=pg,
        topics=topics,
        accounts_group=f"projector-accounts-{run}",
        transfers_group=f"projector-transfers-{run}",
    )
    last = {e.stream_id: e.stream_version for e in (*history.accounts, *history.transfers)}
    async with running(projector_app(settings)):
        for topic, events in (
            (topics.account_events, history.accounts),
            (topics.transfer_events, history.transfers),
        ):
            for envelope in events:
                await send(producer, topic, envelope.stream_id or "", envelope)

        async def every_stream_projected() -> bool:
            model = await dump(pg)
            versions = {a["account_id"]: a["version"] for a in model["accounts"]}
            versions |= {t["transfer_id"]: t["version"] for t in model["transfers"]}
            return versions == last

        await eventually(every_stream_projected, within=90, what="the history to be projected")
    return await dump(pg)


async def rebuilt(pg: PostgresSettings) -> ReadModel:
    """The read model the rebuild makes from the event stores."""
    report = await rebuild(ProjectorSettings(pg=pg))
    assert report.events == 14
    return await dump(pg)


async def test_v1_events_give_the_read_model_of_the_same_history_at_the_current_versions(
    infra: Endpoints, producer: AIOKafkaProducer
) -> None:
    ids = {name: new_id(name) for name in ("alice", "bob", "carol", "t1", "t2")}
    old, current = the_history(ids, v1=True), the_history(ids, v1=False)
    assert {e.schema_version for e in (*old.accounts, *old.transfers)} == {1}
    versions = {(e.type, e.schema_version) for e in (*current.accounts, *current.transfers)}
    assert versions == {(t, current_versions()[t]) for t, _ in versions}
    assert {t for t, v in versions if v > 1} == set(ADDED_SINCE_V1)

    models: dict[str, ReadModel] = {}
    for name, history in (("v1", old), ("current", current)):
        async with databases_of_its_own(infra) as pg:
            await store(pg, history)
            models[f"{name} live"] = await projected_live(infra, pg, producer, history)
            models[f"{name} rebuilt"] = await rebuilt(pg)

    expected = models["current live"]
    for name, model in models.items():
        assert model == expected, f"{name} differs from current live"
    # And that model is the history's, not an empty one.
    alice, bob, t1, t2 = ids["alice"], ids["bob"], ids["t1"], ids["t2"]
    assert {(a["account_id"], a["balance"], a["version"]) for a in expected["accounts"]} == {
        (alice, Decimal("80.00"), 5),
        (bob, Decimal("80.00"), 2),
    }
    activity = {(a["account_id"], a["version"]): a for a in expected["account_activity"]}
    assert len(activity) == 7
    refund = activity[(alice, 5)]
    assert (refund["type"], refund["amount"], refund["transfer_id"]) == (
        "MoneyDeposited",
        Decimal("5.00"),
        t2,
    )
    transfers = {t["transfer_id"]: t for t in expected["transfers"]}
    assert [(t["status"], t["reason"], t["refunded"]) for t in (transfers[t1], transfers[t2])] == [
        ("completed", None, False),
        ("failed", "target_account_not_found", True),
    ]
    # v1 had no description; upcast, it is null, as at the current versions when none was
    # given.
    assert {a["description"] for a in activity.values()} == {None}
    assert {t["description"] for t in transfers.values()} == {None}
    assert expected["parked_streams"] == []
