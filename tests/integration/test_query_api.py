"""The query API over a real read database (schema from the projector's migration, rows written
here): lists, pages, filters, 404s, money and time formats, and read-your-writes waiting."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest

from bank_deploy.providers import Endpoints, free_port
from bank_query_api.freshness import APPLICATION_NAME, CHANNEL
from bank_shared.eventstore.migrate import migrate
from tests.logins import bearer
from tests.query_api_client import serving, settings_for
from tests.support import ServiceProcess, eventually

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"
T0 = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


# (account_id, owner, balance, version, opened_at, updated_at), oldest first; carol and dave
# were opened at the same moment, so their order comes from the id.
ACCOUNTS = [
    ("alice", "Alice", "100.00", 3, at(0), at(5)),
    ("bob", "Bob", "0.50", 1, at(1), at(1)),
    ("carol", "Carol", "1234567.80", 2, at(2), at(7)),
    ("dave", "Dave", "7", 1, at(2), at(2)),
    # Each `min_version` test moves its own account.
    *[
        (name, "Waiter", "1.00", 1, at(10), at(10))
        for name in ("w-notified", "w-polled", "w-never", "w-reconnect")
    ],
]
# alice: opened with 100, got 25 from transfer t-1 (described), withdrew 25.
RENT = "Rent for March <b>&amp;</b>"  # stored and answered as it is: escaping is the page's job
ALICE_ACTIVITY = [
    (1, "AccountOpened", "100.00", "100.00", None, at(0), None),
    (2, "MoneyDeposited", "25.00", "125.00", "t-1", at(3), RENT),
    (3, "MoneyWithdrawn", "25", "100.00", None, at(5), None),
]
# (transfer_id, source, target, amount, status, reason, refunded, started_at, finished_at,
# description); t-4 and t-5 started at the same moment, so their order comes from the id.
# "nobody" is in no accounts row.
TRANSFERS = [
    ("t-1", "bob", "alice", "25.00", "completed", None, False, at(3), at(3.1), RENT),
    ("t-2", "bob", "carol", "0.50", "failed", "insufficient_funds", False, at(4), at(4.1), None),
    ("t-3", "carol", "alice", "10.00", "started", None, False, at(5), None, None),
    (
        "t-4",
        "alice",
        "nobody",
        "5.00",
        "failed",
        "target_account_not_found",
        True,
        at(6),
        at(6.2),
        "Birthday present",
    ),
    ("t-5", "dave", "carol", "1.00", "debited", None, False, at(6), None, None),
]
NEWEST_FIRST = ["t-4", "t-5", "t-3", "t-2", "t-1"]


async def fresh_database(infra: Endpoints, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(infra.pg.dsn("postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name


async def drop_database(infra: Endpoints, name: str) -> None:
    admin = await asyncpg.connect(infra.pg.dsn("postgres"))
    try:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="module")
async def read_db(infra: Endpoints) -> AsyncIterator[str]:
    """A fresh read database with the projector's schema and this module's rows."""
    name = await fresh_database(infra, "query")
    conn = await asyncpg.connect(infra.pg.dsn(name))
    try:
        await migrate(conn, "bank_projector.migrations")
        await conn.executemany(
            "INSERT INTO accounts (account_id, owner, balance, version, opened_at, updated_at)"
            " VALUES ($1, $2, $3::numeric, $4, $5, $6)",
            ACCOUNTS,
        )
        await conn.executemany(
            "INSERT INTO account_activity"
            " (account_id, version, type, amount, balance_after, transfer_id, occurred_at,"
            " description)"
            " VALUES ('alice', $1, $2, $3::numeric, $4::numeric, $5, $6, $7)",
            ALICE_ACTIVITY,
        )
        await conn.executemany(
            "INSERT INTO transfers (transfer_id, source_account_id, target_account_id, amount,"
            " status, reason, refunded, started_at, finished_at, version, description)"
            " VALUES ($1, $2, $3, $4::numeric, $5, $6, $7, $8, $9, 1, $10)",
            TRANSFERS,
        )
    finally:
        await conn.close()
    yield name
    await drop_database(infra, name)


@pytest.fixture(scope="module")
async def api(infra: Endpoints, read_db: str) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(settings_for(infra, read_db)) as served:
        yield served.client


async def write(infra: Endpoints, database: str, sql: str, *args: object, notify: bool) -> None:
    """Change the read model as the projector does: in one transaction, NOTIFY included."""
    conn = await asyncpg.connect(infra.pg.dsn(database))
    try:
        async with conn.transaction():
            await conn.execute(sql, *args)
            if notify:
                await conn.execute("SELECT pg_notify($1, '')", CHANNEL)
    finally:
        await conn.close()


def account_json(row: tuple[Any, ...]) -> dict[str, Any]:
    account_id, owner, balance, version, opened_at, updated_at = row
    return {
        "account_id": account_id,
        "owner": owner,
        "balance": f"{Decimal(balance):.2f}",
        "version": version,
        "opened_at": opened_at.isoformat().replace("+00:00", "Z"),
        "updated_at": updated_at.isoformat().replace("+00:00", "Z"),
    }


def assert_problem(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM
    body: dict[str, Any] = answer.json()
    assert (body["status"], body["code"]) == (status, code)
    assert body["message"]
    return body


# --- accounts ---------------------------------------------------------------------------------


async def test_accounts_are_listed_oldest_first_in_pages_with_the_total(
    api: httpx.AsyncClient,
) -> None:
    everyone = await api.get("/accounts")
    assert everyone.status_code == 200, everyone.text
    body = everyone.json()
    assert body["total"] == len(ACCOUNTS)
    oldest_first = sorted(ACCOUNTS, key=lambda row: (row[4], row[0]))
    assert [a["account_id"] for a in body["items"]] == [row[0] for row in oldest_first]
    assert body["items"][:2] == [account_json(ACCOUNTS[0]), account_json(ACCOUNTS[1])]

    page = (await api.get("/accounts", params={"limit": 2, "offset": 2})).json()
    assert [a["account_id"] for a in page["items"]] == ["carol", "dave"]
    assert page["total"] == len(ACCOUNTS)

    beyond = (await api.get("/accounts", params={"offset": 1000})).json()
    assert beyond == {"items": [], "total": len(ACCOUNTS)}


async def test_one_account_with_money_as_two_decimal_strings_and_utc_times(
    api: httpx.AsyncClient,
) -> None:
    alice = await api.get("/accounts/alice")
    assert alice.status_code == 200, alice.text
    assert alice.json() == {
        "account_id": "alice",
        "owner": "Alice",
        "balance": "100.00",
        "version": 3,
        "opened_at": "2026-01-15T09:30:00Z",
        "updated_at": "2026-01-15T09:35:00Z",
    }
    assert (await api.get("/accounts/bob")).json()["balance"] == "0.50"
    assert (await api.get("/accounts/carol")).json()["balance"] == "1234567.80"
    assert (await api.get("/accounts/dave")).json()["balance"] == "7.00"


async def test_an_unknown_account_is_a_404_problem_that_says_what_to_do(
    api: httpx.AsyncClient,
) -> None:
    for path in ("/accounts/nobody", "/accounts/nobody/events"):
        body = assert_problem(await api.get(path), 404, "account_not_found")
        assert "POST /accounts" in body["message"]
        assert body["account_id"] == "nobody"


async def test_history_is_newest_first_and_limited(api: httpx.AsyncClient) -> None:
    history = await api.get("/accounts/alice/events")
    assert history.status_code == 200, history.text
    assert history.json() == {
        "items": [
            {
                "version": 3,
                "type": "MoneyWithdrawn",
                "amount": "25.00",
                "balance_after": "100.00",
                "transfer_id": None,
                "description": None,
                "occurred_at": "2026-01-15T09:35:00Z",
            },
            {
                "version": 2,
                "type": "MoneyDeposited",
                "amount": "25.00",
                "balance_after": "125.00",
                "transfer_id": "t-1",
                "description": RENT,
                "occurred_at": "2026-01-15T09:33:00Z",
            },
            {
                "version": 1,
                "type": "AccountOpened",
                "amount": "100.00",
                "balance_after": "100.00",
                "transfer_id": None,
                "description": None,
                "occurred_at": "2026-01-15T09:30:00Z",
            },
        ]
    }
    latest = (await api.get("/accounts/alice/events", params={"limit": 2})).json()
    assert [e["version"] for e in latest["items"]] == [3, 2]
    # Known account, no activity rows: an empty history, not a 404.
    assert (await api.get("/accounts/bob/events")).json() == {"items": []}


# --- transfers --------------------------------------------------------------------------------


async def ids(api: httpx.AsyncClient, **params: str | int) -> tuple[list[str], int]:
    answer = await api.get("/transfers", params=params)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return [t["transfer_id"] for t in body["items"]], body["total"]


async def test_transfers_are_listed_newest_first_in_pages_with_the_total(
    api: httpx.AsyncClient,
) -> None:
    assert await ids(api) == (NEWEST_FIRST, 5)
    assert await ids(api, limit=2, offset=1) == (NEWEST_FIRST[1:3], 5)
    assert await ids(api, offset=5) == ([], 5)


async def test_transfers_filtered_by_account_match_source_or_target(
    api: httpx.AsyncClient,
) -> None:
    assert await ids(api, account_id="alice") == (["t-4", "t-3", "t-1"], 3)
    assert await ids(api, account_id="bob") == (["t-2", "t-1"], 2)
    assert await ids(api, account_id="alice", limit=1, offset=1) == (["t-3"], 3)
    assert await ids(api, account_id="nobody-at-all") == ([], 0)


async def test_transfers_filtered_by_status_and_both(api: httpx.AsyncClient) -> None:
    assert await ids(api, status="failed") == (["t-4", "t-2"], 2)
    assert await ids(api, status="debited") == (["t-5"], 1)
    assert await ids(api, status="failed", account_id="alice") == (["t-4"], 1)
    assert await ids(api, status="completed", account_id="carol") == ([], 0)


async def test_a_bad_status_is_a_422_that_lists_the_valid_ones(api: httpx.AsyncClient) -> None:
    body = assert_problem(
        await api.get("/transfers", params={"status": "done"}), 422, "validation_error"
    )
    assert "started, debited, completed, failed" in body["message"]
    assert body["errors"][0]["field"] == "status"


async def test_one_transfer_and_its_failure_reason(api: httpx.AsyncClient) -> None:
    failed = await api.get("/transfers/t-4")
    assert failed.status_code == 200, failed.text
    assert failed.json() == {
        "transfer_id": "t-4",
        "source_account_id": "alice",
        "source_owner": "Alice",
        "target_account_id": "nobody",
        "target_owner": None,
        "amount": "5.00",
        "description": "Birthday present",
        "status": "failed",
        "reason": "target_account_not_found",
        "refunded": True,
        "started_at": "2026-01-15T09:36:00Z",
        "debited_at": None,
        "finished_at": "2026-01-15T09:36:12Z",
    }
    running = (await api.get("/transfers/t-3")).json()
    assert (running["status"], running["reason"], running["finished_at"]) == (
        "started",
        None,
        None,
    )
    body = assert_problem(await api.get("/transfers/t-404"), 404, "transfer_not_found")
    assert body["transfer_id"] == "t-404"


def shown(transfer: dict[str, Any]) -> tuple[str, str | None, str | None, str | None]:
    return (
        transfer["transfer_id"],
        transfer["source_owner"],
        transfer["target_owner"],
        transfer["description"],
    )


async def test_transfers_show_their_description_and_each_account_s_owner(
    api: httpx.AsyncClient,
) -> None:
    everything = (await api.get("/transfers")).json()
    assert [shown(t) for t in everything["items"]] == [
        ("t-4", "Alice", None, "Birthday present"),  # the target is in no accounts row
        ("t-5", "Dave", "Carol", None),
        ("t-3", "Carol", "Alice", None),
        ("t-2", "Bob", "Carol", None),
        ("t-1", "Bob", "Alice", RENT),
    ]
    assert everything["total"] == 5
    alices = (await api.get("/transfers", params={"account_id": "alice", "limit": 2})).json()
    assert [shown(t) for t in alices["items"]] == [
        ("t-4", "Alice", None, "Birthday present"),
        ("t-3", "Carol", "Alice", None),
    ]
    assert alices["total"] == 3
    assert shown((await api.get("/transfers/t-1")).json()) == ("t-1", "Bob", "Alice", RENT)


async def test_an_owner_appears_once_the_account_is_in_the_read_model(
    infra: Endpoints, read_db: str, api: httpx.AsyncClient
) -> None:
    await write(
        infra,
        read_db,
        "INSERT INTO transfers (transfer_id, source_account_id, target_account_id, amount,"
        " status, refunded, started_at, version)"
        " VALUES ('t-early', 'dave', 'late', 1, 'started', false, $1, 1)",
        at(-60),  # the oldest: the other tests' pages stay as they were
        notify=False,
    )
    try:
        before = (await api.get("/transfers/t-early")).json()
        assert (before["source_owner"], before["target_owner"]) == ("Dave", None)
        await write(
            infra,
            read_db,
            "INSERT INTO accounts (account_id, owner, balance, version, opened_at, updated_at)"
            " VALUES ('late', 'Late Larry', 0, 1, $1, $1)",
            at(-60),
            notify=False,
        )
        after = (await api.get("/transfers/t-early")).json()
        assert (after["source_owner"], after["target_owner"]) == ("Dave", "Late Larry")
    finally:
        await write(
            infra, read_db, "DELETE FROM transfers WHERE transfer_id = 't-early'", notify=False
        )
        await write(infra, read_db, "DELETE FROM accounts WHERE account_id = 'late'", notify=False)


async def test_bad_parameters_are_422_problems(api: httpx.AsyncClient) -> None:
    for path, field in [
        ("/accounts?limit=0", "limit"),
        ("/accounts?limit=501", "limit"),
        ("/accounts?offset=-1", "offset"),
        ("/transfers?limit=ten", "limit"),
        ("/accounts/alice?min_version=0", "min_version"),
        ("/accounts/alice/events?limit=0", "limit"),
    ]:
        body = assert_problem(await api.get(path), 422, "validation_error")
        assert [e["field"] for e in body["errors"]] == [field], path


async def test_unknown_routes_are_404_problems(api: httpx.AsyncClient) -> None:
    assert_problem(await api.get("/nowhere"), 404, "not_found")


# --- read-your-writes -------------------------------------------------------------------------


async def test_min_version_already_applied_answers_at_once(api: httpx.AsyncClient) -> None:
    started = time.monotonic()
    for version in (1, 3):
        answer = await api.get("/accounts/alice", params={"min_version": version})
        assert (answer.status_code, answer.json()["version"]) == (200, 3), answer.text
    assert time.monotonic() - started < 1.0


async def test_min_version_reached_later_is_answered_when_the_projector_notifies(
    infra: Endpoints, read_db: str
) -> None:
    # No periodic re-read within the bound: only the notification can end the wait early.
    settings = settings_for(infra, read_db, min_version_wait=10.0, min_version_recheck=30.0)
    async with serving(settings) as served:
        started = time.monotonic()
        waiting = asyncio.create_task(
            served.client.get("/accounts/w-notified", params={"min_version": 2})
        )
        await asyncio.sleep(0.3)  # the request is waiting on the version it does not have yet
        assert not waiting.done()
        await write(
            infra,
            read_db,
            "UPDATE accounts SET version = 2, balance = 11.5 WHERE account_id = 'w-notified'",
            notify=True,
        )
        answer = await waiting
        elapsed = time.monotonic() - started
    assert answer.status_code == 200, answer.text
    assert (answer.json()["version"], answer.json()["balance"]) == (2, "11.50")
    assert elapsed < 3.0, f"took {elapsed:.1f}s: the notification did not wake the request"


async def test_min_version_reached_without_a_notification_is_found_by_the_re_read(
    infra: Endpoints, read_db: str, api: httpx.AsyncClient
) -> None:
    started = time.monotonic()
    waiting = asyncio.create_task(api.get("/accounts/w-polled", params={"min_version": 2}))
    await asyncio.sleep(0.3)
    await write(
        infra,
        read_db,
        "UPDATE accounts SET version = 2 WHERE account_id = 'w-polled'",
        notify=False,
    )
    answer = await waiting
    assert (answer.status_code, answer.json()["version"]) == (200, 2), answer.text
    assert time.monotonic() - started < 2.0


async def test_an_account_that_appears_while_waiting_is_answered(
    infra: Endpoints, read_db: str, api: httpx.AsyncClient
) -> None:
    account = f"w-new-{uuid.uuid4().hex[:8]}"
    waiting = asyncio.create_task(api.get(f"/accounts/{account}", params={"min_version": 1}))
    await asyncio.sleep(0.3)
    await write(
        infra,
        read_db,
        "INSERT INTO accounts (account_id, owner, balance, version, opened_at, updated_at)"
        " VALUES ($1, 'New', 0, 1, now(), now())",
        account,
        notify=True,
    )
    answer = await waiting
    assert answer.status_code == 200, answer.text
    assert (answer.json()["version"], answer.json()["balance"]) == (1, "0.00")
    await write(infra, read_db, "DELETE FROM accounts WHERE account_id = $1", account, notify=True)


async def test_min_version_never_reached_is_a_503_to_retry_after_the_bound(
    infra: Endpoints, read_db: str
) -> None:
    settings = settings_for(infra, read_db, min_version_wait=0.5)
    async with serving(settings) as served:
        started = time.monotonic()
        behind = await served.client.get("/accounts/w-never", params={"min_version": 5})
        elapsed = time.monotonic() - started
        absent = await served.client.get("/accounts/w-absent", params={"min_version": 1})

    body = assert_problem(behind, 503, "not_yet_projected")
    assert behind.headers["retry-after"] == "1"
    assert (body["account_id"], body["min_version"], body["version"]) == ("w-never", 5, 1)
    assert "version 1" in body["message"]
    assert "retry" in body["message"]
    assert 0.5 <= elapsed < 3.0

    # Still absent after the bound: the contract's 404, not an endless invitation to retry.
    assert_problem(absent, 404, "account_not_found")


async def test_after_the_listener_connection_is_lost_notifications_wake_requests_again(
    infra: Endpoints, read_db: str
) -> None:
    settings = settings_for(infra, read_db, min_version_wait=10.0, min_version_recheck=30.0)
    async with serving(settings) as served:
        changes = served.reader.changes
        admin = await asyncpg.connect(infra.pg.dsn(read_db))
        try:
            cut = await admin.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = $1 AND datname = $2",
                APPLICATION_NAME,
                read_db,
            )
            assert cut, "no listener connection found"
        finally:
            await admin.close()
        await eventually(lambda: not changes.connected.is_set(), within=10, what="loss seen")
        await eventually(changes.connected.is_set, within=10, what="listener back")

        started = time.monotonic()
        waiting = asyncio.create_task(
            served.client.get("/accounts/w-reconnect", params={"min_version": 2})
        )
        await asyncio.sleep(0.3)
        await write(
            infra,
            read_db,
            "UPDATE accounts SET version = 2 WHERE account_id = 'w-reconnect'",
            notify=True,
        )
        answer = await waiting
    assert (answer.status_code, answer.json()["version"]) == (200, 2), answer.text
    assert time.monotonic() - started < 3.0


# --- operations -------------------------------------------------------------------------------


async def test_health_and_ready(api: httpx.AsyncClient) -> None:
    health = await api.get("/health")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    ready = await api.get("/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "checks": {"postgres": "ok", "read_model": "ok"}}


async def test_without_the_read_model_it_is_not_ready_and_queries_are_503(
    infra: Endpoints,
) -> None:
    name = await fresh_database(infra, "query_empty")
    try:
        async with serving(settings_for(infra, name)) as served:
            ready = await served.client.get("/ready")
            assert ready.status_code == 503, ready.text
            body = ready.json()
            assert body["status"] == "not_ready"
            assert body["checks"]["postgres"] == "ok"
            assert "accounts, account_activity, transfers" in body["checks"]["read_model"]

            answer = await served.client.get("/accounts")
            problem = assert_problem(answer, 503, "service_unavailable")
            assert "projector" in problem["message"]
            assert answer.headers["retry-after"] == "1"
    finally:
        await drop_database(infra, name)


async def test_the_process_serves_until_sigterm(infra: Endpoints, read_db: str) -> None:
    port = free_port()
    env = {
        **os.environ,
        "BANK_PG_HOST": infra.pg.host,
        "BANK_PG_PORT": str(infra.pg.port),
        "BANK_PG_USER": infra.pg.user,
        "BANK_PG_PASSWORD": infra.pg.password,
        "BANK_PG_READ_DB": read_db,
        "BANK_QUERY_API_HTTP_PORT": str(port),
    }
    service = await ServiceProcess("bank_query_api", env, port).start()
    try:
        await service.wait_ready()
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=bearer(), timeout=10
        ) as client:
            ready = await client.get("/ready")
            assert ready.json()["checks"] == {"postgres": "ok", "read_model": "ok"}
            alice = await client.get("/accounts/alice")
            assert (alice.status_code, alice.json()["balance"]) == (200, "100.00")
    finally:
        await service.stop()
    # uvicorn re-raises the SIGTERM it handled once shutdown is complete, hence -SIGTERM.
    output = await service.output()
    assert service.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
