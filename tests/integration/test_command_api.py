"""The command API over the real broker and database, with the accounts service deciding:
answers, rejections, validation, waiting, timeouts and idempotency."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal

import asyncpg
import httpx
import pytest
from asyncpg.transaction import Transaction

from bank_command_api.dispatch import Dispatcher
from bank_command_api.idempotency import (
    IdempotencyKey,
    IdempotencyKeyReusedError,
    claim_keys,
    fingerprint,
)
from bank_command_api.ledger import (
    DECIDED_CHANNEL,
    MAX_REASON,
    CommandRecord,
    record_decisions,
)
from bank_command_api.settings import CommandApiSettings
from bank_command_api.waiting import APPLICATION_NAME
from bank_deploy.providers import Endpoints
from bank_shared.contracts.actors import TELLER
from bank_shared.contracts.outcomes import CommandOutcome
from bank_shared.service import Platform
from bank_shared.topics import TopicSettings
from tests.command_api_client import (
    QUERY_API,
    open_account,
    sent_so_far,
    serving,
    serving_app,
    settings_for,
)
from tests.support import eventually, new_id

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def api_settings(infra: Endpoints, topics: TopicSettings) -> CommandApiSettings:
    return settings_for(infra, topics)


@pytest.fixture(scope="module")
async def api(
    api_settings: CommandApiSettings, accounts: Platform
) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(api_settings) as client:
        yield client


# --- answers ----------------------------------------------------------------------------------


async def test_open_deposit_and_withdraw_answer_with_version_and_balance(
    api: httpx.AsyncClient,
) -> None:
    alice = new_id("alice")
    opened = await api.post(
        "/accounts", json={"owner": "Alice", "initial_balance": "100.00", "account_id": alice}
    )
    assert opened.status_code == 201, opened.text
    body = opened.json()
    assert body == {
        "account_id": alice,
        "command_id": body["command_id"],
        "status": "accepted",
        "version": 1,
        "balance": "100.00",
    }
    uuid.UUID(body["command_id"])

    bob = await api.post("/accounts", json={"owner": "Bob", "initial_balance": 50})
    assert bob.status_code == 201, bob.text
    assert bob.json()["balance"] == "50.00"
    uuid.UUID(bob.json()["account_id"])  # chosen for the client

    deposited = await api.post(f"/accounts/{alice}/deposits", json={"amount": "25.5"})
    assert deposited.status_code == 200, deposited.text
    assert deposited.json()["status"] == "accepted"
    assert (deposited.json()["version"], deposited.json()["balance"]) == (2, "125.50")

    withdrawn = await api.post(f"/accounts/{alice}/withdrawals", json={"amount": 25})
    assert withdrawn.status_code == 200, withdrawn.text
    assert (withdrawn.json()["version"], withdrawn.json()["balance"]) == (3, "100.50")


@pytest.mark.parametrize("keyed", [False, True], ids=["without keys", "with keys"])
async def test_concurrent_posts_are_each_recorded_sent_and_answered_once(
    api: httpx.AsyncClient, api_settings: CommandApiSettings, keyed: bool
) -> None:
    """Concurrent requests' commands may share one statement (group commit, whose batching
    the unit tests show): each must still get its own command row, outbox row and answer,
    and with a key, the key bound to that command."""
    account = await open_account(api, "0")
    keys = [f"{account}-{n}" for n in range(1, 41)]
    answers = await asyncio.gather(
        *(
            api.post(
                f"/accounts/{account}/deposits",
                json={"amount": n},
                headers={"Idempotency-Key": key} if keyed else None,
            )
            for n, key in enumerate(keys, start=1)
        )
    )
    assert [a.status_code for a in answers] == [200] * 40, [a.text for a in answers]
    bodies = [a.json() for a in answers]
    assert sorted(b["version"] for b in bodies) == list(range(2, 42))
    assert len({b["command_id"] for b in bodies}) == 40
    assert max(bodies, key=lambda b: b["version"])["balance"] == f"{sum(range(1, 41))}.00"
    conn = await asyncpg.connect(api_settings.dsn)
    try:
        rows = await conn.fetch(
            "SELECT c.command_id, count(o.id) AS sent FROM commands c"
            " LEFT JOIN outbox o ON o.message_id = c.command_id"
            " WHERE c.stream_id = $1 AND c.command_type = 'DepositMoney' GROUP BY c.command_id",
            account,
        )
        bound = await conn.fetch(
            "SELECT key, command_id FROM idempotency_keys WHERE key = ANY($1)", keys
        )
    finally:
        await conn.close()
    assert {str(r["command_id"]) for r in rows} == {b["command_id"] for b in bodies}
    assert {r["sent"] for r in rows} == {1}
    expected = {key: body["command_id"] for key, body in zip(keys, bodies, strict=True)}
    assert {r["key"]: str(r["command_id"]) for r in bound} == (expected if keyed else {})


async def test_withdrawing_more_than_the_balance_is_409_insufficient_funds(
    api: httpx.AsyncClient,
) -> None:
    account = await open_account(api, "10.00")
    answer = await api.post(f"/accounts/{account}/withdrawals", json={"amount": "10.01"})
    assert answer.status_code == 409
    assert answer.headers["content-type"] == PROBLEM
    problem = answer.json()
    assert problem["code"] == "insufficient_funds"
    assert "at most its balance" in problem["message"]
    assert problem["account_id"] == account
    status = await api.get(f"/commands/{problem['command_id']}")
    assert (status.json()["status"], status.json()["code"]) == ("rejected", "insufficient_funds")


@pytest.mark.parametrize("operation", ["deposits", "withdrawals"])
async def test_an_unknown_account_is_404_account_not_found(
    api: httpx.AsyncClient, operation: str
) -> None:
    answer = await api.post(f"/accounts/{new_id('nobody')}/{operation}", json={"amount": "1"})
    assert answer.status_code == 404
    assert answer.json()["code"] == "account_not_found"
    assert "POST /accounts" in answer.json()["message"]


async def test_opening_an_existing_account_id_is_409(api: httpx.AsyncClient) -> None:
    account = await open_account(api, "1")
    again = await api.post("/accounts", json={"owner": "Other", "account_id": account})
    assert again.status_code == 409
    assert again.json()["code"] == "account_already_exists"
    assert "account_id" in again.json()["message"]


# --- validation: refused here, nothing sent -----------------------------------------------------

# Each is refused as an amount; all but the zeros are refused as an opening balance too.
BAD_AMOUNTS = [
    "10.5",  # a JSON float
    "1e3",  # an exponent (a float to the JSON parser)
    '"1e3"',
    "NaN",
    '"NaN"',
    "Infinity",
    '"-Infinity"',
    '"-5.00"',
    "-5",
    "0",
    '"0.00"',
    '"10.505"',
    '"1000000000.01"',  # above the configured maximum
    "10000000000000000000000",  # far above any amount
    "true",
    "null",
    '"ten"',
    '""',
]
ZEROS = ("0", '"0.00"')


@pytest.mark.parametrize("amount", BAD_AMOUNTS)
async def test_a_bad_amount_is_422_says_what_to_send_and_sends_nothing(
    api: httpx.AsyncClient, api_settings: CommandApiSettings, amount: str
) -> None:
    before = await sent_so_far(api_settings)
    requests = [
        ("/accounts/alice/deposits", f'{{"amount": {amount}}}'),
        ("/accounts/alice/withdrawals", f'{{"amount": {amount}}}'),
        (
            "/transfers",
            f'{{"source_account_id": "a", "target_account_id": "b", "amount": {amount}}}',
        ),
    ]
    if amount not in ZEROS:
        requests.append(("/accounts", f'{{"owner": "Zed", "initial_balance": {amount}}}'))
    for path, raw in requests:
        answer = await api.post(path, content=raw, headers={"content-type": "application/json"})
        assert answer.status_code == 422, (path, raw, answer.text)
        assert answer.headers["content-type"] == PROBLEM
        problem = answer.json()
        assert problem["code"] == "validation_error"
        assert '"10.50"' in problem["message"], problem
        [field] = problem["errors"]
        assert field["field"] in ("amount", "initial_balance")
        assert '"10.50"' in field["message"]
    assert await sent_so_far(api_settings) == before


async def test_an_opening_balance_may_be_zero_but_not_negative(api: httpx.AsyncClient) -> None:
    zero = await api.post("/accounts", json={"owner": "Zero", "initial_balance": 0})
    assert (zero.status_code, zero.json()["balance"]) == (201, "0.00")
    negative = await api.post("/accounts", json={"owner": "Neg", "initial_balance": "-0.01"})
    assert negative.status_code == 422
    assert '"10.50"' in negative.json()["message"]


async def test_a_transfer_between_one_account_is_422_and_sends_nothing(
    api: httpx.AsyncClient, api_settings: CommandApiSettings
) -> None:
    before = await sent_so_far(api_settings)
    answer = await api.post(
        "/transfers",
        json={"source_account_id": "alice", "target_account_id": "alice", "amount": "5"},
    )
    assert answer.status_code == 422
    assert answer.json()["code"] == "validation_error"
    assert answer.json()["errors"][0]["field"] == "target_account_id"
    assert await sent_so_far(api_settings) == before


# Written as JSON escapes: what a client can send, a lone surrogate included.
REFUSED_OWNERS = {
    "NUL": r"a\u0000b",
    "bell": r"a\u0007b",
    "newline": r"a\nb",
    "delete": r"a\u007fb",
    "right-to-left override": r"a\u202eb",
    "isolate": r"a\u2066b",
    "zero-width space": r"a\u200bb",
    "byte order mark": r"\ufeffab",
}


@pytest.mark.parametrize("owner", REFUSED_OWNERS.values(), ids=REFUSED_OWNERS.keys())
async def test_an_owner_with_a_character_a_name_may_not_hold_is_422_and_sends_nothing(
    api: httpx.AsyncClient, api_settings: CommandApiSettings, owner: str
) -> None:
    before = await sent_so_far(api_settings)
    answer = await api.post(
        "/accounts",
        content=f'{{"owner": "{owner}"}}',
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert problem["code"] == "validation_error"
    [field] = problem["errors"]
    assert (field["field"], field["type"]) == ("owner", "invalid_text")
    assert "send letters, digits, spaces and punctuation only" in field["message"]
    assert await sent_so_far(api_settings) == before


async def test_an_owner_that_is_not_unicode_text_is_422_and_sends_nothing(
    api: httpx.AsyncClient, api_settings: CommandApiSettings
) -> None:
    before = await sent_so_far(api_settings)
    answer = await api.post(
        "/accounts",
        content=r'{"owner": "a\ud800b"}',  # a lone surrogate: no character at all
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 422, answer.text
    [field] = answer.json()["errors"]
    assert field["field"] == "owner"
    assert "send text as UTF-8" in field["message"]
    assert await sent_so_far(api_settings) == before


async def test_an_owner_is_kept_in_nfc_with_the_joiners_scripts_need(
    api: httpx.AsyncClient, api_settings: CommandApiSettings
) -> None:
    # "Zoe" with a combining diaeresis, and a Persian name with a zero-width non-joiner.
    names = [("Zoe\u0308", "Zo\u00eb"), ("\u0645\u200c\u06cc", "\u0645\u200c\u06cc")]
    for sent, kept in names:
        account = new_id("nfc")
        answer = await api.post("/accounts", json={"owner": sent, "account_id": account})
        assert answer.status_code == 201, answer.text
        assert await owner_in_store(api_settings, account) == kept


async def owner_in_store(settings: CommandApiSettings, account: str) -> str:
    """The owner of an account as the accounts service stored it (its AccountOpened)."""
    conn = await asyncpg.connect(settings.pg.dsn(settings.pg.accounts_db))
    try:
        owner: str = await conn.fetchval(
            "SELECT envelope->'payload'->>'owner' FROM events WHERE stream_id = $1 AND version = 1",
            account,
        )
        return owner
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "invalid_json"),
        (b'{"amount": "5"}', "text/plain", 415, "unsupported_media_type"),
        (b"[1, 2]", "application/json", 422, "validation_error"),
        (b'{"amount": "5", "ammount": "5"}', "application/json", 422, "validation_error"),
        (b"", "application/json", 422, "validation_error"),
    ],
)
async def test_bodies_that_are_not_the_expected_json_object_are_refused_clearly(
    api: httpx.AsyncClient, raw: bytes, content_type: str, status: int, code: str
) -> None:
    answer = await api.post(
        "/accounts/alice/deposits", content=raw, headers={"content-type": content_type}
    )
    assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text
    assert answer.json()["message"]


async def test_a_body_over_the_limit_is_413(
    api: httpx.AsyncClient, api_settings: CommandApiSettings
) -> None:
    owner = "x" * (api_settings.max_body_bytes + 1)
    answer = await api.post("/accounts", json={"owner": owner})
    assert answer.status_code == 413
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["code"] == "request_too_large"


# --- waiting ----------------------------------------------------------------------------------


async def test_respond_async_answers_202_pending_and_the_command_is_decided_later(
    api: httpx.AsyncClient,
) -> None:
    account = await open_account(api, "5")
    answer = await api.post(
        f"/accounts/{account}/deposits",
        json={"amount": "1.25"},
        headers={"Prefer": "respond-async"},
    )
    assert answer.status_code == 202
    body = answer.json()
    assert (body["status"], body["account_id"]) == ("pending", account)
    assert answer.headers["location"] == f"/commands/{body['command_id']}"
    assert answer.headers["preference-applied"] == "respond-async"

    async def decided() -> bool:
        status: str = (await api.get(answer.headers["location"])).json()["status"]
        return status != "pending"

    await eventually(decided, what="the deposit to be decided")
    status = (await api.get(answer.headers["location"])).json()
    assert status["command_id"] == body["command_id"]
    assert (status["status"], status["code"]) == ("accepted", None)
    assert (status["command_type"], status["stream_id"]) == ("DepositMoney", account)
    assert (status["version"], status["balance"]) == (2, "6.25")


async def test_an_unknown_command_is_404(api: httpx.AsyncClient) -> None:
    answer = await api.get(f"/commands/{uuid.uuid4()}")
    assert answer.status_code == 404
    assert answer.json()["code"] == "command_not_found"
    assert "command_id" in answer.json()["message"]


async def test_without_a_decision_in_time_a_post_is_202_pending_and_stays_pending(
    infra: Endpoints, topics: TopicSettings, api: httpx.AsyncClient
) -> None:
    """A second instance whose transfer commands go to a topic nobody consumes."""
    unconsumed = topics.model_copy(
        update={"transfer_commands": f"test.{uuid.uuid4().hex[:8]}.unconsumed-transfers"}
    )
    settings = settings_for(infra, unconsumed, decision_timeout=1.0)
    async with serving(settings) as slow:
        transfer = {"source_account_id": "a", "target_account_id": "b", "amount": "1"}
        key = {"Idempotency-Key": str(uuid.uuid4())}
        answer = await slow.post("/transfers", json=transfer, headers=key)
        assert answer.status_code == 202, answer.text
        body = answer.json()
        assert body["status"] == "pending"
        uuid.UUID(body["transfer_id"])
        # The transfer's Location is the transfer in the query API, pending or not
        # (docs/command-api.md); the command's status is its Content-Location.
        assert answer.headers["location"] == f"{QUERY_API}/transfers/{body['transfer_id']}"
        assert answer.headers["content-location"] == f"/commands/{body['command_id']}"
        assert "preference-applied" not in answer.headers

        # Retried with its key: the same command, waited for again, still pending.
        again = await slow.post("/transfers", json=transfer, headers=key)
        assert (again.status_code, again.json()) == (202, body)
        # Any instance answers for any command: they share the commands database.
        status = await api.get(answer.headers["content-location"])
        assert status.status_code == 200
        assert (status.json()["status"], status.json()["command_type"]) == (
            "pending",
            "StartTransfer",
        )


async def test_past_max_waiting_a_post_is_202_pending_at_once_and_its_command_is_sent(
    infra: Endpoints, topics: TopicSettings
) -> None:
    """An instance whose transfer commands nobody consumes, so whoever waits, waits for good."""
    unconsumed = topics.model_copy(
        update={"transfer_commands": f"test.{uuid.uuid4().hex[:8]}.unconsumed-transfers"}
    )
    settings = settings_for(infra, unconsumed, decision_timeout=30.0, max_waiting=1)
    async with serving(settings) as api:
        first_id = new_id("waits")
        first = asyncio.create_task(
            api.post(
                "/transfers",
                json={
                    "source_account_id": "a",
                    "target_account_id": "b",
                    "amount": "1",
                    "transfer_id": first_id,
                },
            )
        )
        try:
            conn = await asyncpg.connect(settings.dsn)
            try:
                # The first request registers its wait before its command is written.
                await eventually(
                    lambda: conn.fetchval(
                        "SELECT count(*) = 1 FROM commands WHERE stream_id = $1", first_id
                    )
                )
                started = time.monotonic()
                answer = await api.post(
                    "/transfers",
                    json={"source_account_id": "a", "target_account_id": "b", "amount": "1"},
                )
                elapsed = time.monotonic() - started
                assert answer.status_code == 202, answer.text
                body = answer.json()
                assert body["status"] == "pending"
                # Not the decision timeout: the bound answered it.
                assert elapsed < settings.decision_timeout / 3
                assert "preference-applied" not in answer.headers
                # Sent all the same: recorded, with its outbox row.
                sent = await conn.fetchval(
                    "SELECT count(*) FROM commands c JOIN outbox o ON o.message_id = c.command_id"
                    " WHERE c.command_id = $1",
                    uuid.UUID(body["command_id"]),
                )
                assert sent == 1
            finally:
                await conn.close()
            assert not first.done(), "the first request should still be waiting"
        finally:
            first.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await first


async def test_a_lost_listener_connection_comes_back_and_waiting_still_works(
    api: httpx.AsyncClient, api_settings: CommandApiSettings
) -> None:
    conn = await asyncpg.connect(api_settings.dsn)
    try:
        cut = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            APPLICATION_NAME,
        )
        assert cut, "no listener connection found"
    finally:
        await conn.close()
    account = await open_account(api, "1")
    started = time.monotonic()
    answer = await api.post(f"/accounts/{account}/deposits", json={"amount": "1"})
    assert (answer.status_code, answer.json()["balance"]) == (200, "2.00")
    # Well inside the decision timeout: the notification arrived, not the re-read after it.
    assert time.monotonic() - started < api_settings.decision_timeout / 2


# --- idempotency ------------------------------------------------------------------------------


async def test_the_same_key_and_body_give_the_same_answer_and_one_effect(
    api: httpx.AsyncClient,
) -> None:
    account = await open_account(api, "100")
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = await api.post(f"/accounts/{account}/deposits", json={"amount": "10"}, headers=key)
    second = await api.post(f"/accounts/{account}/deposits", json={"amount": "10.00"}, headers=key)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert (first.json()["version"], first.json()["balance"]) == (2, "110.00")

    after = await api.post(f"/accounts/{account}/deposits", json={"amount": "1"})
    assert (after.json()["version"], after.json()["balance"]) == (3, "111.00")


async def test_two_concurrent_requests_with_one_key_make_one_command(
    api: httpx.AsyncClient,
) -> None:
    account = await open_account(api, "100")
    key = {"Idempotency-Key": str(uuid.uuid4())}
    answers = await asyncio.gather(
        *(
            api.post(f"/accounts/{account}/withdrawals", json={"amount": "30"}, headers=key)
            for _ in range(5)
        )
    )
    assert {a.status_code for a in answers} == {200}
    assert len({a.text for a in answers}) == 1
    after = await api.post(f"/accounts/{account}/withdrawals", json={"amount": "1"})
    assert (after.json()["version"], after.json()["balance"]) == (3, "69.00")


async def test_concurrent_requests_reusing_one_key_for_different_bodies_make_one_command(
    api: httpx.AsyncClient, api_settings: CommandApiSettings
) -> None:
    account = await open_account(api, "100")
    key = {"Idempotency-Key": str(uuid.uuid4())}
    before = await sent_so_far(api_settings)
    answers = await asyncio.gather(
        *(
            api.post(f"/accounts/{account}/deposits", json={"amount": n}, headers=key)
            for n in range(1, 6)
        )
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 422, 422, 422, 422], [a.text for a in answers]
    assert {a.json()["code"] for a in answers if a.status_code == 422} == {"idempotency_key_reused"}
    (won,) = [a.json() for a in answers if a.status_code == 200]
    assert won["version"] == 2
    commands, outbox = await sent_so_far(api_settings)
    assert (commands - before[0], outbox - before[1]) == (1, 1)


async def test_a_repeated_rejection_is_the_same_rejection(api: httpx.AsyncClient) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    path = f"/accounts/{new_id('ghost')}/deposits"
    first = await api.post(path, json={"amount": "1"}, headers=key)
    second = await api.post(path, json={"amount": "1"}, headers=key)
    assert first.status_code == second.status_code == 404
    assert first.json() == second.json()


async def test_a_key_reused_for_another_request_is_422(
    api: httpx.AsyncClient, api_settings: CommandApiSettings
) -> None:
    account = await open_account(api, "100")
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = await api.post(f"/accounts/{account}/deposits", json={"amount": "10"}, headers=key)
    assert first.status_code == 200
    before = await sent_so_far(api_settings)
    for path, amount in [("deposits", "11"), ("withdrawals", "10")]:
        reused = await api.post(f"/accounts/{account}/{path}", json={"amount": amount}, headers=key)
        assert reused.status_code == 422
        assert reused.json()["code"] == "idempotency_key_reused"
        assert "new key" in reused.json()["message"]
    assert await sent_so_far(api_settings) == before


# --- idempotency: keys claimed in batches (claim_keys, the keyed group commit) -------------------
# These tests take the `api` fixture for the commands database it migrates.

CLAIMS_STREAM = "test-claims"


def claim(name: str, body: str = "one body") -> IdempotencyKey:
    return IdempotencyKey(TELLER, name, fingerprint("POST", "/test", {"body": body}))


async def record_command(conn: asyncpg.Connection, command_id: uuid.UUID) -> None:
    """The command row a key's foreign key needs at commit."""
    await conn.execute(
        "INSERT INTO commands (command_id, command_type, stream_id) VALUES ($1, 'Test', $2)",
        command_id,
        CLAIMS_STREAM,
    )


@contextlib.asynccontextmanager
async def connections(dsn: str, count: int) -> AsyncIterator[list[asyncpg.Connection]]:
    """`count` connections; afterwards, the rows the claim tests made are deleted."""
    opened = [await asyncpg.connect(dsn) for _ in range(count)]
    try:
        yield opened
    finally:
        for conn in opened:
            await conn.close()
        cleanup = await asyncpg.connect(dsn)
        try:
            await cleanup.execute(
                "DELETE FROM idempotency_keys WHERE command_id IN"
                " (SELECT command_id FROM commands WHERE stream_id = $1)",
                CLAIMS_STREAM,
            )
            await cleanup.execute("DELETE FROM commands WHERE stream_id = $1", CLAIMS_STREAM)
        finally:
            await cleanup.close()


async def waits_for_a_lock(observer: asyncpg.Connection, pid: int | None = None) -> bool:
    """Whether the backend `pid` (any backend of this database if None) waits for a lock."""
    waiting: int = await observer.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND ($1::int IS NULL OR pid = $1)",
        pid,
    )
    return waiting > 0


async def test_keys_claimed_together_bind_the_first_use_and_answer_the_repeats(
    api: httpx.AsyncClient, api_settings: CommandApiSettings
) -> None:
    """One batch of claims: a key twice, once with another body, and a second key."""
    first, repeat, other_body, second = (uuid.uuid4() for _ in range(4))
    k1, k2 = new_id("k1"), new_id("k2")
    async with connections(api_settings.dsn, 1) as [conn]:
        async with conn.transaction():
            answers = await claim_keys(
                conn,
                [
                    (claim(k2), second),
                    (claim(k1), first),
                    (claim(k1), repeat),
                    (claim(k1, "another body"), other_body),
                ],
            )
            for command_id in (first, second):
                await record_command(conn, command_id)
        assert answers[:3] == [None, None, first]
        assert isinstance(answers[3], IdempotencyKeyReusedError)
        bound = await conn.fetch(
            "SELECT key, command_id FROM idempotency_keys WHERE key = ANY($1)", [k1, k2]
        )
        assert {r["key"]: r["command_id"] for r in bound} == {k1: first, k2: second}

        # Later claims of the same keys find what they stand for.
        async with conn.transaction():
            again = await claim_keys(
                conn, [(claim(k1), uuid.uuid4()), (claim(k2, "another body"), uuid.uuid4())]
            )
        assert again[0] == first
        assert isinstance(again[1], IdempotencyKeyReusedError)


async def test_a_key_claimed_by_an_uncommitted_transaction_is_answered_once_it_commits(
    api: httpx.AsyncClient, api_settings: CommandApiSettings
) -> None:
    """Two API instances claiming one key at once: the second waits for the first's commit,
    then is answered with its command, not an error and not a second command."""
    key, winner = new_id("shared"), uuid.uuid4()
    async with connections(api_settings.dsn, 3) as [first, second, observer]:
        holding = first.transaction()
        await holding.start()
        assert await claim_keys(first, [(claim(key), winner)]) == [None]
        await record_command(first, winner)

        async def claim_in_second() -> list[uuid.UUID | Exception | None]:
            async with second.transaction():
                return await claim_keys(second, [(claim(key), uuid.uuid4())])

        waiting = asyncio.create_task(claim_in_second())
        await eventually(
            lambda: waits_for_a_lock(observer, second.get_server_pid()),
            within=10,
            what="the second claim to wait for the first transaction",
        )
        assert not waiting.done()
        await holding.commit()
        assert await asyncio.wait_for(waiting, 10) == [winner]


async def test_transactions_waiting_for_each_others_keys_do_not_deadlock(
    api: httpx.AsyncClient, api_settings: CommandApiSettings
) -> None:
    """T0 holds m. T1 claims a, b and m; T2 claims b and a, in the order a request would.
    Claimed in sorted order, T1 holds a and b and waits for m, T2 waits for a: a chain that
    ends when T0 commits. Claimed in the order given, T1 would hold a and wait for m while T2
    held b and waited for a; once T0 committed, T1 would wait for b: a deadlock."""
    a, b, m = (new_id(name) for name in ("a", "b", "m"))
    async with connections(api_settings.dsn, 4) as [t0, t1, t2, observer]:
        holding = t0.transaction()
        await holding.start()
        held_m = uuid.uuid4()
        await claim_keys(t0, [(claim(m), held_m)])
        await record_command(t0, held_m)

        async def claim_and_commit(
            conn: asyncpg.Connection, keys: list[str]
        ) -> tuple[list[uuid.UUID], list[uuid.UUID | Exception | None]]:
            commands = [uuid.uuid4() for _ in keys]
            async with conn.transaction():
                answers = await claim_keys(
                    conn, [(claim(k), c) for k, c in zip(keys, commands, strict=True)]
                )
                for command_id, answer in zip(commands, answers, strict=True):
                    if answer is None:
                        await record_command(conn, command_id)
            return commands, answers

        first = asyncio.create_task(claim_and_commit(t1, [a, m, b]))
        await eventually(
            lambda: waits_for_a_lock(observer, t1.get_server_pid()), within=10, what="T1 waiting"
        )
        second = asyncio.create_task(claim_and_commit(t2, [b, a]))
        await eventually(
            lambda: waits_for_a_lock(observer, t2.get_server_pid()), within=10, what="T2 waiting"
        )
        await holding.commit()
        (t1_a, _, t1_b), answers_1 = await asyncio.wait_for(first, 10)
        _, answers_2 = await asyncio.wait_for(second, 10)
        assert answers_1 == [None, held_m, None]
        assert answers_2 == [t1_b, t1_a]


async def hold_key(conn: asyncpg.Connection, key: str) -> Transaction:
    """Claim `key` in a transaction left open, as another instance in mid-write would."""
    holding = conn.transaction()
    await holding.start()
    await claim_keys(conn, [(claim(key), uuid.uuid4())])
    return holding


async def deposit_behind_a_held_key(
    api: httpx.AsyncClient, account: str, holds: asyncpg.Connection, observer: asyncpg.Connection
) -> tuple[asyncio.Task[httpx.Response], Transaction]:
    """A keyed deposit whose write waits for a key `holds` has claimed and not committed, so
    the requests that come meanwhile queue into the next batch. Rolling back the returned
    transaction lets the write go on (its key is then new)."""
    blocker = new_id("blocker")
    holding = await hold_key(holds, blocker)
    held = asyncio.create_task(keyed_deposit(api, account, blocker, "1"))
    await eventually(lambda: waits_for_a_lock(observer), within=10, what="a held write")
    return held, holding


async def keyed_deposit(
    api: httpx.AsyncClient, account: str, key: str, amount: str
) -> httpx.Response:
    return await api.post(
        f"/accounts/{account}/deposits", json={"amount": amount}, headers={"Idempotency-Key": key}
    )


async def test_requests_repeating_a_key_in_one_batch_make_one_command(
    infra: Endpoints, topics: TopicSettings, accounts: Platform
) -> None:
    """A key claimed elsewhere and not committed holds a first request's write, so the five
    requests that follow, all with one key, two bodies, queue into one batch behind it."""
    settings = settings_for(infra, topics)
    async with (
        serving_app(settings) as (api, app),
        connections(settings.dsn, 2) as [outside, observer],
    ):
        dispatcher: Dispatcher = app.state.dispatcher
        account = await open_account(api, "100")
        held, holding = await deposit_behind_a_held_key(api, account, outside, observer)
        key = new_id("repeated")
        repeats = [
            asyncio.create_task(keyed_deposit(api, account, key, amount))
            for amount in ("5", "5", "5", "6", "6")
        ]
        await eventually(lambda: dispatcher.listener.waiting == 6, what="all six queued")
        await holding.rollback()  # the blocker's claim never was: the held request's key is new
        first = await asyncio.wait_for(held, 30)
        answers = await asyncio.wait_for(asyncio.gather(*repeats), 30)
        assert first.status_code == 200, first.text
        won = [a for a in answers if a.status_code == 200]
        refused = [a for a in answers if a.status_code != 200]
        # Whichever body came first made the one command; the same body repeats its answer.
        assert len(won) in (2, 3), [a.text for a in answers]
        assert len({a.text for a in won}) == 1
        assert {(a.status_code, a.json()["code"]) for a in refused} == {
            (422, "idempotency_key_reused")
        }
        assert len(won) + len(refused) == 5
        assert won[0].json()["version"] == 3
        made = await observer.fetchval(
            "SELECT count(*) FROM commands WHERE stream_id = $1 AND command_type = 'DepositMoney'",
            account,
        )
        assert made == 2  # the held request's and the repeated key's


async def test_a_key_held_too_long_elsewhere_is_409_and_holds_up_no_other_request(
    infra: Endpoints, topics: TopicSettings, accounts: Platform
) -> None:
    """Another instance has claimed key X and not committed. A batch with X and Y waits
    KEY_LOCK_TIMEOUT_MS, then is written one request at a time: Y's request is answered and
    X's is told to send it again (409 idempotency_key_in_use), the same key then working."""
    settings = settings_for(infra, topics)
    async with (
        serving_app(settings) as (api, app),
        connections(settings.dsn, 3) as [holds_blocker, holds_x, observer],
    ):
        dispatcher: Dispatcher = app.state.dispatcher
        account = await open_account(api, "100")
        x, y = new_id("x"), new_id("y")
        holding_x = await hold_key(holds_x, x)
        held, holding_blocker = await deposit_behind_a_held_key(
            api, account, holds_blocker, observer
        )
        batch = [asyncio.create_task(keyed_deposit(api, account, key, "2")) for key in (x, y)]
        await eventually(lambda: dispatcher.listener.waiting == 3, what="X and Y queued")
        await holding_blocker.rollback()
        x_answer, y_answer = await asyncio.wait_for(asyncio.gather(*batch), 30)
        assert y_answer.status_code == 200, y_answer.text
        assert x_answer.status_code == 409, x_answer.text
        assert x_answer.json()["code"] == "idempotency_key_in_use"
        assert "same key" in x_answer.json()["message"]
        assert x_answer.headers["retry-after"] == "1"
        assert (await asyncio.wait_for(held, 30)).status_code == 200
        await holding_x.rollback()  # the other instance's claim never was
        again = await keyed_deposit(api, account, x, "2")
        assert (again.status_code, again.json()["version"]) == (200, 4), again.text


async def test_an_idempotency_key_with_spaces_is_422(api: httpx.AsyncClient) -> None:
    answer = await api.post(
        "/accounts/alice/deposits", json={"amount": "1"}, headers={"Idempotency-Key": "a b"}
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "Idempotency-Key"


# --- outcomes, operations ---------------------------------------------------------------------


async def test_outcomes_of_commands_sent_by_others_change_nothing(
    api_settings: CommandApiSettings, api: httpx.AsyncClient
) -> None:
    foreign = CommandOutcome(
        command_id=uuid.uuid4(),
        command_type="WithdrawMoney",
        stream_id="someone",
        status="accepted",
        version=3,
        balance=Decimal("1.00"),
    )
    conn = await asyncpg.connect(api_settings.dsn)
    try:
        assert await record_decisions(conn, [foreign, foreign]) == []
    finally:
        await conn.close()


async def test_a_decision_is_notified_as_the_record_it_stored(
    api_settings: CommandApiSettings, api: httpx.AsyncClient
) -> None:
    """The NOTIFY payload is built by PostgreSQL: waiters must read it as the very record
    `record_decisions` returned (two-decimal balance, reason cut to its limit)."""
    command_id = uuid.uuid4()
    listener = await asyncpg.connect(api_settings.dsn)
    conn = await asyncpg.connect(api_settings.dsn)
    heard: asyncio.Queue[str] = asyncio.Queue()
    try:
        await listener.add_listener(DECIDED_CHANNEL, lambda *args: heard.put_nowait(args[-1]))
        await conn.execute(
            "INSERT INTO commands (command_id, command_type, stream_id) VALUES ($1, $2, $3)",
            command_id,
            "WithdrawMoney",
            "someone",
        )
        outcome = CommandOutcome(
            command_id=command_id,
            command_type="WithdrawMoney",
            stream_id="someone",
            status="rejected",
            code="insufficient_funds",
            reason="é" * (MAX_REASON + 5),
            version=7,
            balance=Decimal("0.10"),
        )
        [stored] = await record_decisions(conn, [outcome])
        while True:
            notified = CommandRecord.from_json(await asyncio.wait_for(heard.get(), 10))
            if notified.command_id == command_id:
                break
        assert notified == replace(stored, reason="é" * MAX_REASON)
        assert (stored.balance, stored.version, stored.code) == (
            Decimal("0.10"),
            7,
            "insufficient_funds",
        )
    finally:
        await listener.close()
        await conn.close()


async def test_health_ready_and_the_openapi_document(api: httpx.AsyncClient) -> None:
    assert (await api.get("/health")).status_code == 200
    ready = await api.get("/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["postgres"] == "ok"
    document = (await api.get("/openapi.json")).json()
    withdrawals = document["paths"]["/accounts/{account_id}/withdrawals"]["post"]["responses"]
    assert {"200", "202", "404", "409", "413", "422"} <= set(withdrawals)
    assert PROBLEM in withdrawals["409"]["content"]
