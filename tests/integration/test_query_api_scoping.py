"""Scoped reads over a real read database (built by the projector's own `project` from events):
two customers and the teller each read only what they may; what they may not reads exactly as
what does not exist; every route of bank data needs a token; the caps on change streams and
`min_version` waiters answer 503 when full and free their slot when a stream or wait ends."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn

from bank_deploy.providers import Endpoints, free_port
from bank_projector.projections import project
from bank_query_api.__main__ import QueryApiServer
from bank_query_api.changes import ChangeStreams
from bank_query_api.queries import TRANSFER_COLUMNS, TransferFilter
from bank_query_api.settings import QueryApiSettings
from bank_shared.auth.material import token_issuer
from bank_shared.contracts.accounts import AccountOpened, MoneyDeposited, MoneyWithdrawn
from bank_shared.contracts.actors import BANK_TELLER, TELLER, Actor
from bank_shared.contracts.envelope import Envelope, Message, read_payload, seal_events
from bank_shared.contracts.transfers import TransferCompleted, TransferStarted
from bank_shared.eventstore.migrate import migrate
from tests.logins import AUTH, bearer
from tests.query_api_client import Serving, serving, settings_for
from tests.support import eventually, new_id

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
# The open routes: no bank data in them.
OPEN_PATHS = {"/health", "/ready"}


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


@dataclass(frozen=True)
class Bank:
    """Who is who in this module's read model (ids random, so nothing is shared)."""

    carol: str
    dave: str
    carol_1: str  # carol's two accounts
    carol_2: str
    dave_1: str  # dave's
    old: str  # opened before accounts had owners (AccountOpened v1): the teller's
    waiting: str  # the teller's, moved by the waiter tests only
    nowhere: str  # no such account
    carol_to_dave: str  # transfers: who sees which is the point
    carol_to_carol: str
    dave_to_old: str
    carol_to_nowhere: str
    old_to_nowhere: str

    def token(self, who: str) -> dict[str, str]:
        return bearer() if who == TELLER else bearer(who, "customer")


def a_bank() -> Bank:
    return Bank(
        carol=new_id("carol"),
        dave=new_id("dave"),
        carol_1=new_id("c1"),
        carol_2=new_id("c2"),
        dave_1=new_id("d1"),
        old=new_id("old"),
        waiting=new_id("w"),
        nowhere=new_id("nowhere"),
        carol_to_dave=new_id("t-cd"),
        carol_to_carol=new_id("t-cc"),
        dave_to_old=new_id("t-do"),
        carol_to_nowhere=new_id("t-cn"),
        old_to_nowhere=new_id("t-on"),
    )


def events_of(stream_id: str, events: list[Message], when: datetime, after: int = 0) -> Events:
    sealed = seal_events(
        events,
        cause=uuid.uuid4(),
        correlation_id=uuid.uuid4(),
        stream_id=stream_id,
        after_version=after,
        occurred_at=when,
    )
    return [(e, read_payload(e)) for e in sealed]


Events = list[tuple[Envelope, Message]]


def opened(account_id: str, owner: str, owned_by: str, when: datetime) -> Events:
    event = AccountOpened(
        account_id=account_id,
        owner=owner,
        owned_by=owned_by,
        initial_balance="100",
        balance_after="100",
    )
    return events_of(account_id, [event], when)


def opened_before_owners(account_id: str, when: datetime) -> Events:
    """An AccountOpened as written before v2: no `owned_by`; the upcaster supplies it."""
    [(envelope, _)] = opened(account_id, "Old Olga", TELLER, when)
    payload = {k: v for k, v in envelope.payload.items() if k != "owned_by"}
    v1 = envelope.model_copy(update={"schema_version": 1, "payload": payload})
    return [(v1, read_payload(v1))]


def transfer(
    transfer_id: str, source: str, target: str, by: Actor, when: datetime, *, done: bool = True
) -> Events:
    started = TransferStarted(
        transfer_id=transfer_id,
        source_account_id=source,
        target_account_id=target,
        amount="10",
        description=f"from {source}",
        requested_by=by,
    )
    return events_of(
        transfer_id,
        [started, TransferCompleted(transfer_id=transfer_id)] if done else [started],
        when,
    )


def history(bank: Bank) -> Events:
    customer = {who: Actor(subject=who, role="customer") for who in (bank.carol, bank.dave)}
    return [
        *opened(bank.carol_1, "Carol Cash", bank.carol, at(0)),
        *opened(bank.carol_2, "Carol Savings", bank.carol, at(1)),
        *opened(bank.dave_1, "Dave Doe", bank.dave, at(2)),
        *opened_before_owners(bank.old, at(3)),
        *opened(bank.waiting, "Walter Wait", TELLER, at(4)),
        *events_of(
            bank.carol_1,
            [
                MoneyWithdrawn(
                    account_id=bank.carol_1,
                    amount="10",
                    balance_after="90",
                    transfer_id=bank.carol_to_dave,
                    description=f"from {bank.carol_1}",
                )
            ],
            at(10),
            after=1,
        ),
        *events_of(
            bank.dave_1,
            [
                MoneyDeposited(
                    account_id=bank.dave_1,
                    amount="10",
                    balance_after="110",
                    transfer_id=bank.carol_to_dave,
                    description=f"from {bank.carol_1}",
                )
            ],
            at(10),
            after=1,
        ),
        *transfer(bank.carol_to_dave, bank.carol_1, bank.dave_1, customer[bank.carol], at(10)),
        *transfer(bank.carol_to_carol, bank.carol_1, bank.carol_2, customer[bank.carol], at(11)),
        *transfer(bank.dave_to_old, bank.dave_1, bank.old, customer[bank.dave], at(12)),
        *transfer(bank.carol_to_nowhere, bank.carol_2, bank.nowhere, customer[bank.carol], at(13)),
        *transfer(bank.old_to_nowhere, bank.old, bank.nowhere, BANK_TELLER, at(14), done=False),
    ]


@contextlib.asynccontextmanager
async def read_database(infra: Endpoints) -> AsyncIterator[str]:
    name = f"scoping_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(infra.pg.dsn("postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield name
    finally:
        admin = await asyncpg.connect(infra.pg.dsn("postgres"))
        try:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def apply(infra: Endpoints, database: str, events: Events) -> None:
    """Project events as the projector does (its NOTIFY included)."""
    conn = await asyncpg.connect(infra.pg.dsn(database))
    try:
        await project(conn, events)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def bank() -> Bank:
    return a_bank()


@pytest.fixture(scope="module")
async def read_db(infra: Endpoints, bank: Bank) -> AsyncIterator[str]:
    """A read database of this module's own, with the projector's schema and the bank's
    history projected by the projector's code."""
    async with read_database(infra) as name:
        conn = await asyncpg.connect(infra.pg.dsn(name))
        try:
            await migrate(conn, "bank_projector.migrations")
        finally:
            await conn.close()
        await apply(infra, name, history(bank))
        yield name


@pytest.fixture(scope="module")
async def served(infra: Endpoints, read_db: str) -> AsyncIterator[Serving]:
    async with serving(settings_for(infra, read_db, min_version_wait=0.3)) as served:
        yield served


@pytest.fixture
def api(served: Serving) -> httpx.AsyncClient:
    return served.client


async def get(
    api: httpx.AsyncClient, who: str, bank: Bank, path: str, **params: str | int
) -> httpx.Response:
    return await api.get(path, params=params, headers=bank.token(who))


async def ok(
    api: httpx.AsyncClient, who: str, bank: Bank, path: str, **params: str | int
) -> dict[str, Any]:
    answer = await get(api, who, bank, path, **params)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def as_missing(answer: httpx.Response, asked: str, missing: httpx.Response, unknown: str) -> None:
    """`answer` (for `asked`, which exists but is not the caller's) is, but for the id, the
    very answer for `unknown`, which does not exist."""
    assert answer.status_code == missing.status_code == 404, answer.text
    assert answer.headers["content-type"] == missing.headers["content-type"] == PROBLEM
    assert json.loads(answer.text.replace(asked, "ID")) == json.loads(
        missing.text.replace(unknown, "ID")
    )


# --- the projector records owners ---------------------------------------------------------------


async def test_the_read_model_records_each_account_s_owner_old_ones_the_teller_s(
    infra: Endpoints, read_db: str, bank: Bank
) -> None:
    conn = await asyncpg.connect(infra.pg.dsn(read_db))
    try:
        rows = await conn.fetch("SELECT account_id, owned_by FROM accounts")
    finally:
        await conn.close()
    assert {r["account_id"]: r["owned_by"] for r in rows} == {
        bank.carol_1: bank.carol,
        bank.carol_2: bank.carol,
        bank.dave_1: bank.dave,
        bank.old: TELLER,
        bank.waiting: TELLER,
    }


async def test_a_customer_s_transfers_are_found_through_indexes(
    infra: Endpoints, read_db: str, bank: Bank
) -> None:
    """With sequential scans off, a plan that still scans a table would have no index to use."""
    where, arguments = TransferFilter(visible_to=bank.carol).where()
    conn = await asyncpg.connect(infra.pg.dsn(read_db))
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off")
            plan = await conn.fetchval(
                f"EXPLAIN (FORMAT JSON) SELECT {TRANSFER_COLUMNS} FROM transfers {where}"  # noqa: S608
                " ORDER BY started_at DESC, transfer_id LIMIT 50",
                *arguments,
            )
    finally:
        await conn.close()
    text = json.dumps(json.loads(plan))
    assert "Seq Scan" not in text, text
    assert {"accounts_owned_by", "transfers_source", "transfers_target"} <= set(
        re.findall(r'"Index Name": "(\w+)"', text)
    ), text


# --- accounts -------------------------------------------------------------------------------------


async def test_each_lists_only_their_accounts_and_the_total_counts_only_those(
    api: httpx.AsyncClient, bank: Bank
) -> None:
    def ids(page: dict[str, Any]) -> tuple[list[str], int]:
        return [a["account_id"] for a in page["items"]], page["total"]

    assert ids(await ok(api, bank.carol, bank, "/accounts")) == ([bank.carol_1, bank.carol_2], 2)
    assert ids(await ok(api, bank.carol, bank, "/accounts", offset=1)) == ([bank.carol_2], 2)
    assert ids(await ok(api, bank.dave, bank, "/accounts")) == ([bank.dave_1], 1)
    everyone = [bank.carol_1, bank.carol_2, bank.dave_1, bank.old, bank.waiting]
    assert ids(await ok(api, TELLER, bank, "/accounts")) == (everyone, 5)
    # A customer with no account at all sees an empty bank.
    assert ids(await ok(api, new_id("erin"), bank, "/accounts")) == ([], 0)


async def test_an_account_and_its_events_are_read_by_its_owner_and_the_teller_only(
    api: httpx.AsyncClient, bank: Bank
) -> None:
    for who in (bank.carol, TELLER):
        account = await ok(api, who, bank, f"/accounts/{bank.carol_1}")
        assert (account["owner"], account["balance"], account["version"]) == (
            "Carol Cash",
            "90.00",
            2,
        )
        events = await ok(api, who, bank, f"/accounts/{bank.carol_1}/events")
        assert [e["type"] for e in events["items"]] == ["MoneyWithdrawn", "AccountOpened"]
    for path in ("/accounts/{}", "/accounts/{}/events"):
        for who, theirs in (
            (bank.dave, bank.carol_1),
            (bank.carol, bank.dave_1),
            (bank.carol, bank.old),
        ):
            as_missing(
                await get(api, who, bank, path.format(theirs)),
                theirs,
                await get(api, who, bank, path.format(bank.nowhere)),
                bank.nowhere,
            )


async def test_with_min_version_another_s_account_reads_as_missing_after_the_same_wait(
    api: httpx.AsyncClient, bank: Bank
) -> None:
    assert (await ok(api, bank.carol, bank, f"/accounts/{bank.carol_1}", min_version=2))[
        "version"
    ] == 2
    as_missing(
        await get(api, bank.carol, bank, f"/accounts/{bank.dave_1}", min_version=1),
        bank.dave_1,
        await get(api, bank.carol, bank, f"/accounts/{bank.nowhere}", min_version=1),
        bank.nowhere,
    )


# --- transfers ------------------------------------------------------------------------------------


def shown(page: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    return [(t["transfer_id"], t["source_owner"], t["target_owner"]) for t in page["items"]]


async def test_each_lists_only_the_transfers_that_touch_their_accounts(
    api: httpx.AsyncClient, bank: Bank
) -> None:
    carols = await ok(api, bank.carol, bank, "/transfers")
    # The other side's account id is shown, its holder is not.
    assert shown(carols) == [
        (bank.carol_to_nowhere, "Carol Savings", None),
        (bank.carol_to_carol, "Carol Cash", "Carol Savings"),
        (bank.carol_to_dave, "Carol Cash", None),
    ]
    assert carols["total"] == 3
    assert carols["items"][2]["target_account_id"] == bank.dave_1
    daves = await ok(api, bank.dave, bank, "/transfers")
    assert shown(daves) == [
        (bank.dave_to_old, "Dave Doe", None),
        (bank.carol_to_dave, None, "Dave Doe"),
    ]
    assert daves["total"] == 2
    tellers = await ok(api, TELLER, bank, "/transfers")
    assert shown(tellers) == [
        (bank.old_to_nowhere, "Old Olga", None),
        (bank.carol_to_nowhere, "Carol Savings", None),
        (bank.dave_to_old, "Dave Doe", "Old Olga"),
        (bank.carol_to_carol, "Carol Cash", "Carol Savings"),
        (bank.carol_to_dave, "Carol Cash", "Dave Doe"),
    ]
    # Filters narrow what one may see, never widen it.
    done = await ok(api, bank.carol, bank, "/transfers", status="completed", limit=1)
    assert ([t["transfer_id"] for t in done["items"]], done["total"]) == (
        [bank.carol_to_nowhere],
        3,
    )
    assert (await ok(api, bank.dave, bank, "/transfers", status="started"))["total"] == 0


async def test_filtering_by_an_account_works_for_one_s_own_and_reads_as_missing_for_another_s(
    api: httpx.AsyncClient, bank: Bank
) -> None:
    mine = await ok(api, bank.carol, bank, "/transfers", account_id=bank.carol_2)
    assert shown(mine) == [
        (bank.carol_to_nowhere, "Carol Savings", None),
        (bank.carol_to_carol, "Carol Cash", "Carol Savings"),
    ]
    assert mine["total"] == 2
    for who, theirs in (
        (bank.carol, bank.dave_1),
        (bank.dave, bank.carol_1),
        (bank.dave, bank.old),
    ):
        as_missing(
            await get(api, who, bank, "/transfers", account_id=theirs),
            theirs,
            await get(api, who, bank, "/transfers", account_id=bank.nowhere),
            bank.nowhere,
        )
    # A teller filters by any account id, known or not, as before.
    assert (await ok(api, TELLER, bank, "/transfers", account_id=bank.nowhere))["total"] == 2


async def test_one_transfer_is_read_by_those_it_touches_and_the_teller_only(
    api: httpx.AsyncClient, bank: Bank
) -> None:
    as_carol = await ok(api, bank.carol, bank, f"/transfers/{bank.carol_to_dave}")
    as_dave = await ok(api, bank.dave, bank, f"/transfers/{bank.carol_to_dave}")
    as_teller = await ok(api, TELLER, bank, f"/transfers/{bank.carol_to_dave}")
    assert (as_carol["source_owner"], as_carol["target_owner"]) == ("Carol Cash", None)
    assert (as_dave["source_owner"], as_dave["target_owner"]) == (None, "Dave Doe")
    assert (as_teller["source_owner"], as_teller["target_owner"]) == ("Carol Cash", "Dave Doe")
    hidden = {"source_owner", "target_owner"}
    assert {k: v for k, v in as_carol.items() if k not in hidden} == {
        k: v for k, v in as_teller.items() if k not in hidden
    }
    missing_id = new_id("t-missing")
    for who, theirs in (
        (bank.carol, bank.dave_to_old),
        (bank.dave, bank.carol_to_carol),
        (bank.dave, bank.old_to_nowhere),
    ):
        as_missing(
            await get(api, who, bank, f"/transfers/{theirs}"),
            theirs,
            await get(api, who, bank, f"/transfers/{missing_id}"),
            missing_id,
        )


# --- tokens ---------------------------------------------------------------------------------------


def data_routes(document: dict[str, Any]) -> list[str]:
    """Every GET of the OpenAPI document but the open ones, its path parameters filled in."""
    return [
        re.sub(r"\{[^}]+\}", "x-1", path)
        for path, operations in document["paths"].items()
        if "get" in operations and path not in OPEN_PATHS
    ]


def expired_token() -> str:
    long_ago = datetime.now(UTC) - timedelta(minutes=AUTH.token_minutes * 2)
    return token_issuer(AUTH).issue(Actor(subject=TELLER, role="teller"), long_ago)


async def test_every_route_of_bank_data_needs_a_valid_token(
    served: Serving, api: httpx.AsyncClient
) -> None:
    document = served.app.openapi()
    routes = data_routes(document)
    assert {"/accounts", "/accounts/x-1", "/transfers/x-1", "/changes"} <= set(routes)
    # The document says so too, so /docs asks for a login (at the command API's /token).
    for path, operations in document["paths"].items():
        secured = bool(operations["get"].get("security"))
        assert secured == (path not in OPEN_PATHS), path
    for scheme in document["components"]["securitySchemes"].values():
        assert scheme["flows"]["password"]["tokenUrl"] == served.app.state.settings.token_url

    for path in routes:
        for headers, challenge in (
            ({"Authorization": ""}, "Bearer"),
            ({"Authorization": "Bearer not.a.token"}, 'Bearer error="invalid_token"'),
            ({"Authorization": f"Bearer {expired_token()}"}, 'Bearer error="invalid_token"'),
        ):
            answer = await api.get(path, headers=headers)
            assert answer.status_code == 401, (path, headers, answer.text)
            assert answer.headers["www-authenticate"] == challenge
            assert answer.headers["content-type"] == PROBLEM
            assert answer.json()["code"] == "not_authenticated"
            assert "log in" in answer.json()["message"].lower()
    for path in OPEN_PATHS:
        assert (await api.get(path, headers={"Authorization": ""})).status_code == 200


# --- caps -----------------------------------------------------------------------------------------


async def test_min_version_waiters_beyond_the_cap_get_503_and_a_slot_frees_when_a_wait_ends(
    infra: Endpoints, read_db: str, bank: Bank
) -> None:
    settings = settings_for(
        infra, read_db, max_version_waiters=1, min_version_wait=30.0, min_version_recheck=30.0
    )
    async with serving(settings) as served:
        waiters = served.reader.waiters
        first = asyncio.create_task(
            served.client.get(f"/accounts/{bank.waiting}", params={"min_version": 2})
        )
        await eventually(lambda: waiters.in_use == 1, within=10, what="the first waiter")

        refused = await served.client.get(f"/accounts/{bank.carol_1}", params={"min_version": 9})
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["code"] == "too_many_waiters"
        # A version already there needs no wait, so no slot.
        there = await served.client.get(f"/accounts/{bank.carol_1}", params={"min_version": 1})
        assert there.status_code == 200, there.text

        await apply(infra, read_db, a_deposit(bank.waiting, after=1))
        answer = await first
        assert (answer.status_code, answer.json()["version"]) == (200, 2), answer.text
        assert waiters.in_use == 0

        second = asyncio.create_task(
            served.client.get(f"/accounts/{bank.waiting}", params={"min_version": 3})
        )
        await eventually(lambda: waiters.in_use == 1, within=10, what="the next waiter")
        await apply(infra, read_db, a_deposit(bank.waiting, after=2))
        assert (await second).status_code == 200


def a_deposit(account_id: str, *, after: int) -> Events:
    deposit = MoneyDeposited(
        account_id=account_id, amount="1", balance_after=f"{100 + after}", description=None
    )
    return events_of(account_id, [deposit], datetime.now(UTC), after=after)


@contextlib.asynccontextmanager
async def over_http(settings: QueryApiSettings) -> AsyncIterator[tuple[Serving, str]]:
    """The app served by uvicorn on a port of its own: a change stream is a real, endless
    response, which the in-process transport would wait for in vain."""
    port = free_port()
    async with serving(settings) as served:
        config = uvicorn.Config(served.app, host="127.0.0.1", port=port, lifespan="off")
        streams: ChangeStreams = served.app.state.streams
        server = QueryApiServer(config, streams)
        running = asyncio.create_task(server.serve())
        try:
            await eventually(lambda: server.started, within=10, what="uvicorn to start")
            yield served, f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            await running


async def test_change_streams_beyond_the_cap_get_503_and_a_slot_frees_when_a_stream_closes(
    infra: Endpoints, read_db: str, bank: Bank
) -> None:
    settings = settings_for(infra, read_db, max_change_streams=1)
    async with (
        over_http(settings) as (served, url),
        httpx.AsyncClient(base_url=url, headers=bank.token(bank.carol), timeout=10) as client,
    ):
        slots = served.app.state.streams.slots
        async with client.stream("GET", "/changes") as first:
            assert first.status_code == 200
            assert (await anext(first.aiter_text())).startswith("retry: ")
            assert slots.in_use == 1

            refused = await client.get("/changes")
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"] == "5"
            assert refused.headers["content-type"] == PROBLEM
            assert refused.json()["code"] == "too_many_change_streams"
        # The client hung up: the server notices, ends the stream and frees its slot.
        await eventually(lambda: slots.in_use == 0, within=10, what="the slot to be freed")

        async with client.stream("GET", "/changes") as again:
            assert again.status_code == 200
            assert (await anext(again.aiter_text())).startswith("retry: ")
