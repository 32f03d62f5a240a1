"""Whose money a caller may move, through the command API with the accounts service and the saga
deciding: customers act on their own accounts only (another's reads as 404, and nothing changes
in any event store), pay into anyone's, and leave ids, cash and other people's commands and
Idempotency-Keys to tellers and to their owners."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from bank_accounts.settings import AccountsSettings
from bank_command_api.settings import CommandApiSettings
from bank_deploy.providers import Endpoints
from bank_shared.clock import utc_now
from bank_shared.contracts.actors import Actor
from bank_shared.contracts.envelope import read_payload, seal
from bank_shared.contracts.transfers import StartTransfer, TransferFailed, TransferStarted
from bank_shared.service import Platform
from bank_shared.topics import TopicSettings
from bank_transfers_saga.settings import SagaSettings
from tests.command_api_client import serving, settings_for
from tests.logins import bearer
from tests.support import history, new_id, send
from tests.transfers_client import balance, finished_transfer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api_settings(infra: Endpoints, topics: TopicSettings) -> CommandApiSettings:
    return settings_for(infra, topics)


@pytest.fixture(scope="module")
async def api(
    api_settings: CommandApiSettings, accounts: Platform, saga: Platform
) -> AsyncIterator[httpx.AsyncClient]:
    """The command API; a request is the teller's unless it sends a customer's token."""
    async with serving(api_settings) as client:
        yield client


def customer(name: str) -> tuple[str, dict[str, str]]:
    """A customer of this test's own: their login name and their Authorization header."""
    subject = new_id(name)
    return subject, bearer(subject, "customer")


async def own_account(api: httpx.AsyncClient, who: dict[str, str], cash: str = "0") -> str:
    """An account the customer opened for themselves, with `cash` the teller paid in."""
    opened = await api.post("/accounts", json={"owner": "A Customer"}, headers=who)
    assert opened.status_code == 201, opened.text
    account: str = opened.json()["account_id"]
    if Decimal(cash) > 0:
        deposited = await api.post(f"/accounts/{account}/deposits", json={"amount": cash})
        assert deposited.status_code == 200, deposited.text
    return account


# --- what the event stores hold -----------------------------------------------------------------


async def _counts(dsn: str, query: str, accounts: list[str]) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return {r["stream_id"]: r["n"] for r in await conn.fetch(query, accounts)}
    finally:
        await conn.close()


ACCOUNT_STREAMS = (
    "SELECT stream_id, count(*) AS n FROM events WHERE stream_id = ANY($1) GROUP BY stream_id"
)
TRANSFER_STREAMS = (
    "SELECT stream_id, count(*) AS n FROM events WHERE stream_id IN (SELECT stream_id"
    " FROM events WHERE event_type = 'TransferStarted'"
    " AND (envelope->'payload'->>'source_account_id' = ANY($1)"
    " OR envelope->'payload'->>'target_account_id' = ANY($1))) GROUP BY stream_id"
)


async def stored_events(settings: CommandApiSettings, *accounts: str) -> dict[str, int]:
    """Events per stream, in the session's accounts and transfers databases, of these
    accounts and of every transfer that names one of them."""
    pg = settings.pg
    return {
        **await _counts(pg.dsn(pg.accounts_db), ACCOUNT_STREAMS, list(accounts)),
        **await _counts(pg.dsn(pg.transfers_db), TRANSFER_STREAMS, list(accounts)),
    }


async def commands_sent_by(settings: CommandApiSettings, subject: str) -> int:
    conn = await asyncpg.connect(settings.dsn)
    try:
        sent: int = await conn.fetchval("SELECT count(*) FROM commands WHERE subject = $1", subject)
        return sent
    finally:
        await conn.close()


def same_answer(answer: httpx.Response, account: str) -> tuple[int, str]:
    """The answer with the account id and the command id blanked: what it tells about the
    account beyond the id the caller sent."""
    body = {k: v for k, v in answer.json().items() if k != "command_id"}
    return answer.status_code, json.dumps(body, sort_keys=True).replace(account, "<account>")


# --- the owner -------------------------------------------------------------------------------


async def test_a_customer_withdraws_from_their_own_account(api: httpx.AsyncClient) -> None:
    _, carol = customer("carol")
    account = await own_account(api, carol, cash="100.00")

    answer = await api.post(
        f"/accounts/{account}/withdrawals", json={"amount": "30"}, headers=carol
    )

    assert answer.status_code == 200, answer.text
    assert (answer.json()["version"], answer.json()["balance"]) == (3, "70.00")


async def test_a_customer_may_not_deposit_cash_even_into_their_own_account(
    api: httpx.AsyncClient, api_settings: CommandApiSettings
) -> None:
    _, carol = customer("carol")
    account = await own_account(api, carol, cash="10.00")
    before = await stored_events(api_settings, account)

    answer = await api.post(f"/accounts/{account}/deposits", json={"amount": "5"}, headers=carol)

    assert answer.status_code == 403, answer.text
    assert answer.json()["code"] == "teller_only"
    assert await stored_events(api_settings, account) == before


# --- another customer's account: not there for them --------------------------------------------


@pytest.mark.parametrize("action", ["withdrawal", "deposit", "transfer from it"])
async def test_another_customers_account_is_404_and_nothing_changes(
    accounts_settings: AccountsSettings,
    api: httpx.AsyncClient,
    api_settings: CommandApiSettings,
    action: str,
) -> None:
    _, carol = customer("carol")
    dave_subject, dave = customer("dave")
    carols = await own_account(api, carol, cash="100.00")
    daves = await own_account(api, dave)
    missing = new_id("nowhere")

    async def act(account: str) -> httpx.Response:
        if action == "transfer from it":
            body = {"source_account_id": account, "target_account_id": daves, "amount": "10"}
            return await api.post("/transfers", json=body, headers=dave)
        path = "withdrawals" if action == "withdrawal" else "deposits"
        return await api.post(f"/accounts/{account}/{path}", json={"amount": "10"}, headers=dave)

    before = await stored_events(api_settings, carols, daves)
    sent_before = await commands_sent_by(api_settings, dave_subject)

    answer = await act(carols)

    assert answer.status_code == 404, answer.text
    assert answer.json()["code"] == "account_not_found"
    assert await stored_events(api_settings, carols, daves) == before
    assert await balance(accounts_settings, carols) == Decimal("100.00")
    if action == "transfer from it":  # refused before anything was sent
        assert await commands_sent_by(api_settings, dave_subject) == sent_before
    # Word for word what an account that does not exist gets: ids cannot be probed.
    assert same_answer(answer, carols) == same_answer(await act(missing), missing)


async def test_a_customer_may_transfer_to_another_customers_account(
    accounts_settings: AccountsSettings,
    api: httpx.AsyncClient,
    api_settings: CommandApiSettings,
    saga_settings: SagaSettings,
) -> None:
    carol_subject, carol = customer("carol")
    _, dave = customer("dave")
    carols = await own_account(api, carol, cash="100.00")
    daves = await own_account(api, dave)

    answer = await api.post(
        "/transfers",
        json={"source_account_id": carols, "target_account_id": daves, "amount": "30"},
        headers=carol,
    )

    assert answer.status_code == 202, answer.text
    transfer_id = answer.json()["transfer_id"]
    assert await finished_transfer(saga_settings.dsn, transfer_id) == [
        "TransferStarted",
        "TransferDebited",
        "TransferCompleted",
    ]
    assert await balance(accounts_settings, carols) == Decimal("70.00")
    assert await balance(accounts_settings, daves) == Decimal("30.00")
    started = read_payload((await history(saga_settings.dsn, transfer_id))[0])
    assert isinstance(started, TransferStarted)
    assert started.requested_by == Actor(subject=carol_subject, role="customer")


async def test_the_accounts_service_refuses_a_debit_sent_in_someone_elses_name(
    accounts_settings: AccountsSettings,
    api: httpx.AsyncClient,
    api_settings: CommandApiSettings,
    saga_settings: SagaSettings,
    producer: AIOKafkaProducer,
    topics: TopicSettings,
) -> None:
    """Past the command API's own check, a StartTransfer in Dave's name from Carol's account
    (as a client on the broker could send): the saga debits in Dave's name, the accounts
    service refuses, and no money moves."""
    _, carol = customer("carol")
    dave_subject, dave = customer("dave")
    carols = await own_account(api, carol, cash="100.00")
    daves = await own_account(api, dave)
    transfer_id = new_id("transfer")
    command = StartTransfer(
        transfer_id=transfer_id, source_account_id=carols, target_account_id=daves, amount="10"
    )
    envelope = seal(
        command,
        message_id=uuid.uuid4(),
        correlation_id=uuid.uuid4(),
        causation_id=None,
        occurred_at=utc_now(),
        actor=Actor(subject=dave_subject, role="customer"),
    )

    await send(producer, topics.transfer_commands, transfer_id, envelope)

    assert await finished_transfer(saga_settings.dsn, transfer_id) == [
        "TransferStarted",
        "TransferFailed",
    ]
    failed = read_payload((await history(saga_settings.dsn, transfer_id))[-1])
    assert isinstance(failed, TransferFailed)
    assert (failed.reason, failed.refunded) == ("source_account_not_found", False)
    assert await balance(accounts_settings, carols) == Decimal("100.00")
    assert await balance(accounts_settings, daves) == Decimal("0.00")


# --- what only tellers do ----------------------------------------------------------------------


@pytest.mark.parametrize("what", ["account", "transfer"])
async def test_a_customer_may_not_choose_an_id_and_nothing_is_sent(
    api: httpx.AsyncClient, api_settings: CommandApiSettings, what: str
) -> None:
    carol_subject, carol = customer("carol")
    _, dave = customer("dave")
    carols = await own_account(api, carol, cash="10.00")
    daves = await own_account(api, dave)
    chosen = new_id("chosen")
    path, body = (
        ("/accounts", {"owner": "Carol", "account_id": chosen})
        if what == "account"
        else (
            "/transfers",
            {
                "source_account_id": carols,
                "target_account_id": daves,
                "amount": "1",
                "transfer_id": chosen,
            },
        )
    )
    sent_before = await commands_sent_by(api_settings, carol_subject)
    events_before = await stored_events(api_settings, carols, daves, chosen)

    answer = await api.post(path, json=body, headers=carol)

    assert answer.status_code == 403, answer.text
    assert answer.json()["code"] == "teller_only"
    assert await commands_sent_by(api_settings, carol_subject) == sent_before
    assert await stored_events(api_settings, carols, daves, chosen) == events_before


@pytest.mark.parametrize(
    "body",
    [{"initial_balance": "10.00"}, {"owned_by": "alice"}],
    ids=["with money in it", "for someone else"],
)
async def test_a_customer_opens_only_empty_accounts_of_their_own(
    api: httpx.AsyncClient, api_settings: CommandApiSettings, body: dict[str, str]
) -> None:
    _, carol = customer("carol")

    answer = await api.post("/accounts", json={"owner": "Carol", **body}, headers=carol)

    assert answer.status_code == 403, answer.text
    assert answer.json()["code"] == "teller_only"
    assert await stored_events(api_settings, answer.json()["account_id"]) == {}


async def test_a_teller_opens_an_account_for_a_customer_who_then_moves_its_money(
    accounts_settings: AccountsSettings,
    api: httpx.AsyncClient,
    api_settings: CommandApiSettings,
    saga_settings: SagaSettings,
) -> None:
    """Opened by the teller for Alice (a user who can log in), with money in it: Alice
    withdraws and sends from it; a stranger cannot."""
    _, stranger = customer("stranger")
    alice = bearer("alice", "customer")
    opened = await api.post(
        "/accounts", json={"owner": "Alice", "initial_balance": "50.00", "owned_by": "alice"}
    )
    assert opened.status_code == 201, opened.text
    account = opened.json()["account_id"]
    target = await own_account(api, stranger)

    withdrawn = await api.post(
        f"/accounts/{account}/withdrawals", json={"amount": 5}, headers=alice
    )
    refused = await api.post(
        f"/accounts/{account}/withdrawals", json={"amount": 5}, headers=stranger
    )
    sent = await api.post(
        "/transfers",
        json={"source_account_id": account, "target_account_id": target, "amount": "15"},
        headers=alice,
    )

    assert (withdrawn.status_code, refused.status_code, sent.status_code) == (200, 404, 202)
    assert await finished_transfer(saga_settings.dsn, sent.json()["transfer_id"]) == [
        "TransferStarted",
        "TransferDebited",
        "TransferCompleted",
    ]
    assert await balance(accounts_settings, account) == Decimal("30.00")


async def test_a_teller_may_open_accounts_only_for_users_who_can_log_in(
    api: httpx.AsyncClient, api_settings: CommandApiSettings
) -> None:
    nobody = new_id("nobody")

    answer = await api.post("/accounts", json={"owner": "Nobody", "owned_by": nobody})

    assert answer.status_code == 422, answer.text
    assert answer.json()["code"] == "unknown_user"
    assert await commands_sent_by(api_settings, nobody) == 0


# --- commands and keys are their sender's ---------------------------------------------------


async def test_a_command_is_seen_by_its_sender_and_tellers_only(api: httpx.AsyncClient) -> None:
    _, carol = customer("carol")
    _, dave = customer("dave")
    account = await own_account(api, carol, cash="10.00")
    sent = await api.post(f"/accounts/{account}/withdrawals", json={"amount": 1}, headers=carol)
    assert sent.status_code == 200, sent.text
    command_id = sent.json()["command_id"]
    unknown = str(uuid.uuid4())

    by_carol = await api.get(f"/commands/{command_id}", headers=carol)
    by_teller = await api.get(f"/commands/{command_id}")
    by_dave = await api.get(f"/commands/{command_id}", headers=dave)
    no_such = await api.get(f"/commands/{unknown}", headers=dave)

    assert (by_carol.status_code, by_teller.status_code) == (200, 200)
    assert by_carol.json()["status"] == "accepted"
    assert by_dave.status_code == 404, by_dave.text
    assert by_dave.json()["code"] == "command_not_found"
    # As if it did not exist.
    assert json.dumps(by_dave.json()).replace(command_id, "<id>") == json.dumps(
        no_such.json()
    ).replace(unknown, "<id>")


async def test_the_same_idempotency_key_of_two_customers_is_two_commands(
    api: httpx.AsyncClient,
) -> None:
    _, carol = customer("carol")
    _, dave = customer("dave")
    key = {"Idempotency-Key": str(uuid.uuid4())}
    request = {"owner": "Same Name"}

    carols = await api.post("/accounts", json=request, headers={**carol, **key})
    daves = await api.post("/accounts", json=request, headers={**dave, **key})
    carols_again = await api.post("/accounts", json=request, headers={**carol, **key})

    assert [a.status_code for a in (carols, daves, carols_again)] == [201, 201, 201]
    assert carols.json()["command_id"] != daves.json()["command_id"]
    assert carols.json()["account_id"] != daves.json()["account_id"]
    assert carols_again.json() == carols.json()
    # Each account is its sender's: Dave's cannot be used by Carol.
    refused = await api.post(
        f"/accounts/{daves.json()['account_id']}/withdrawals", json={"amount": 1}, headers=carol
    )
    assert refused.status_code == 404, refused.text


async def test_an_idempotency_key_older_than_24_hours_is_a_new_request(
    api: httpx.AsyncClient, api_settings: CommandApiSettings
) -> None:
    carol_subject, carol = customer("carol")
    key = str(uuid.uuid4())
    headers = {**carol, "Idempotency-Key": key}
    first = await api.post("/accounts", json={"owner": "Carol"}, headers=headers)
    assert first.status_code == 201, first.text
    conn = await asyncpg.connect(api_settings.dsn)
    try:
        aged = await conn.execute(
            "UPDATE idempotency_keys SET created_at = now() - interval '25 hours'"
            " WHERE subject = $1 AND key = $2",
            carol_subject,
            key,
        )
    finally:
        await conn.close()
    assert aged == "UPDATE 1"

    # Even another request: the old key stands for nothing any more.
    second = await api.post("/accounts", json={"owner": "Carol Again"}, headers=headers)
    second_again = await api.post("/accounts", json={"owner": "Carol Again"}, headers=headers)

    assert second.status_code == 201, second.text
    assert second.json()["command_id"] != first.json()["command_id"]
    assert second.json()["account_id"] != first.json()["account_id"]
    assert second_again.json() == second.json()
