"""Transfers through the REST command API, as a client sends them, with the accounts service
and the transfers saga deciding: completed, failed, refunded, and idempotent retries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest

from bank_accounts.settings import AccountsSettings
from bank_command_api.settings import CommandApiSettings
from bank_deploy.providers import Endpoints
from bank_shared.service import Platform
from bank_shared.topics import TopicSettings
from bank_transfers_saga.settings import SagaSettings
from tests.command_api_client import QUERY_API, open_account, serving, settings_for
from tests.support import history, new_id
from tests.transfers_client import balance, finished_transfer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def api(
    infra: Endpoints, topics: TopicSettings, accounts: Platform, saga: Platform
) -> AsyncIterator[httpx.AsyncClient]:
    settings: CommandApiSettings = settings_for(infra, topics)
    async with serving(settings) as client:
        yield client


async def transfer(api: httpx.AsyncClient, source: str, target: str, amount: str) -> str:
    answer = await api.post(
        "/transfers",
        json={"source_account_id": source, "target_account_id": target, "amount": amount},
    )
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["status"] == "accepted"
    assert answer.headers["Location"] == f"{QUERY_API}/transfers/{body['transfer_id']}"
    transfer_id: str = body["transfer_id"]
    return transfer_id


async def test_a_transfer_of_30_from_alice_100_to_bob_50_completes_70_and_80(
    api: httpx.AsyncClient, accounts_settings: AccountsSettings, saga_settings: SagaSettings
) -> None:
    alice = await open_account(api, "100.00", "Alice")
    bob = await open_account(api, "50.00", "Bob")

    transfer_id = await transfer(api, alice, bob, "30.00")

    assert await finished_transfer(saga_settings.dsn, transfer_id) == [
        "TransferStarted",
        "TransferDebited",
        "TransferCompleted",
    ]
    assert await balance(accounts_settings, alice) == Decimal("70.00")
    assert await balance(accounts_settings, bob) == Decimal("80.00")


async def test_a_transfer_above_the_balance_fails_and_moves_no_money(
    api: httpx.AsyncClient, accounts_settings: AccountsSettings, saga_settings: SagaSettings
) -> None:
    alice = await open_account(api, "10.00", "Alice")
    bob = await open_account(api, "0", "Bob")

    transfer_id = await transfer(api, alice, bob, "10.01")

    await finished_transfer(saga_settings.dsn, transfer_id)
    failed = (await history(saga_settings.dsn, transfer_id))[-1]
    assert (failed.type, failed.payload["reason"]) == ("TransferFailed", "insufficient_funds")
    assert await balance(accounts_settings, alice) == Decimal("10.00")
    assert await balance(accounts_settings, bob) == Decimal("0.00")


async def test_a_transfer_to_an_unknown_account_fails_refunded_and_the_source_is_whole(
    api: httpx.AsyncClient, accounts_settings: AccountsSettings, saga_settings: SagaSettings
) -> None:
    alice = await open_account(api, "100.00", "Alice")

    transfer_id = await transfer(api, alice, new_id("nobody"), "25.50")

    await finished_transfer(saga_settings.dsn, transfer_id)
    failed = (await history(saga_settings.dsn, transfer_id))[-1].payload
    assert (failed["reason"], failed["refunded"]) == ("target_account_not_found", True)
    assert await balance(accounts_settings, alice) == Decimal("100.00")


async def test_a_transfer_retried_with_the_same_idempotency_key_happens_once(
    api: httpx.AsyncClient, accounts_settings: AccountsSettings, saga_settings: SagaSettings
) -> None:
    alice = await open_account(api, "100.00", "Alice")
    bob = await open_account(api, "0", "Bob")
    body = {"source_account_id": alice, "target_account_id": bob, "amount": "40.00"}
    headers = {"Idempotency-Key": new_id("retry")}

    first = await api.post("/transfers", json=body, headers=headers)
    again = await api.post("/transfers", json=body, headers=headers)

    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    await finished_transfer(saga_settings.dsn, first.json()["transfer_id"])
    assert await balance(accounts_settings, alice) == Decimal("60.00")
    assert await balance(accounts_settings, bob) == Decimal("40.00")
    withdrawals = [
        e for e in await history(accounts_settings.dsn, alice) if e.type == "MoneyWithdrawn"
    ]
    assert len(withdrawals) == 1


async def test_a_second_transfer_with_the_same_transfer_id_is_refused_409(
    api: httpx.AsyncClient, saga_settings: SagaSettings
) -> None:
    alice = await open_account(api, "5.00", "Alice")
    bob = await open_account(api, "0", "Bob")
    body = {
        "source_account_id": alice,
        "target_account_id": bob,
        "amount": "1",
        "transfer_id": new_id("fixed"),
    }

    assert (await api.post("/transfers", json=body)).status_code == 202
    again = await api.post("/transfers", json=body)

    assert again.status_code == 409
    assert again.json()["code"] == "transfer_already_exists"
    await finished_transfer(saga_settings.dsn, body["transfer_id"])
