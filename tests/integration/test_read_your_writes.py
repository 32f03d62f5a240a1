"""The whole bank through its two REST APIs, as a client uses it: commands to the command
API, reads from the query API with `min_version` (read-your-writes) instead of sleeps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bank_deploy.providers import Endpoints
from bank_shared.service import Platform
from bank_shared.topics import TopicSettings
from tests.command_api_client import serving as serving_commands
from tests.command_api_client import settings_for as command_settings
from tests.query_api_client import serving as serving_queries
from tests.query_api_client import settings_for as query_settings
from tests.support import eventually, new_id

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def bank(
    infra: Endpoints,
    topics: TopicSettings,
    accounts: Platform,
    saga: Platform,
    projector: Platform,
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with (
        serving_commands(command_settings(infra, topics)) as commands,
        serving_queries(query_settings(infra, infra.pg.read_db)) as queries,
    ):
        yield commands, queries.client


async def accepted(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def account_at(queries: httpx.AsyncClient, account: str, version: int) -> dict[str, Any]:
    return await accepted(
        await queries.get(f"/accounts/{account}", params={"min_version": version}), 200
    )


async def finished_transfer(queries: httpx.AsyncClient, transfer_id: str) -> dict[str, Any]:
    """Transfers have no version in the contract: wait for the row to reach an end state."""
    found: dict[str, Any] = {}

    async def finished() -> bool:
        answer = await queries.get(f"/transfers/{transfer_id}")
        if answer.status_code == 200:
            found.update(answer.json())
        return found.get("status") in ("completed", "failed")

    await eventually(finished, what=f"transfer {transfer_id} to finish in the read model")
    return found


async def test_a_client_sees_its_own_writes_balances_history_and_transfers(
    bank: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    commands, queries = bank
    alice, bob = new_id("alice"), new_id("bob")
    opened = await accepted(
        await commands.post(
            "/accounts", json={"owner": "Alice", "initial_balance": "100.00", "account_id": alice}
        ),
        201,
    )
    assert (await account_at(queries, alice, opened["version"]))["balance"] == "100.00"
    deposit = await accepted(
        await commands.post(f"/accounts/{alice}/deposits", json={"amount": "25"}), 200
    )
    withdrawal = await accepted(
        await commands.post(f"/accounts/{alice}/withdrawals", json={"amount": "5.50"}), 200
    )
    assert (deposit["version"], withdrawal["version"]) == (2, 3)
    alice_now = await account_at(queries, alice, withdrawal["version"])
    assert (alice_now["owner"], alice_now["balance"], alice_now["version"]) == (
        "Alice",
        "119.50",
        3,
    )
    await accepted(
        await commands.post(
            "/accounts", json={"owner": "Bob", "initial_balance": "50", "account_id": bob}
        ),
        201,
    )

    moved = await accepted(
        await commands.post(
            "/transfers",
            json={"source_account_id": alice, "target_account_id": bob, "amount": "30.00"},
        ),
        202,
    )
    refused = await accepted(
        await commands.post(
            "/transfers",
            json={"source_account_id": bob, "target_account_id": alice, "amount": "1000.00"},
        ),
        202,
    )

    # Bob's credit is his version 2; Alice's debit her version 4.
    assert (await account_at(queries, bob, 2))["balance"] == "80.00"
    assert (await account_at(queries, alice, 4))["balance"] == "89.50"
    done = await finished_transfer(queries, moved["transfer_id"])
    assert (done["status"], done["reason"], done["amount"]) == ("completed", None, "30.00")
    failed = await finished_transfer(queries, refused["transfer_id"])
    assert (failed["status"], failed["reason"]) == ("failed", "insufficient_funds")

    history = await accepted(await queries.get(f"/accounts/{alice}/events"), 200)
    assert [
        (e["version"], e["type"], e["amount"], e["balance_after"], e["transfer_id"])
        for e in history["items"]
    ] == [
        (4, "MoneyWithdrawn", "30.00", "89.50", moved["transfer_id"]),
        (3, "MoneyWithdrawn", "5.50", "119.50", None),
        (2, "MoneyDeposited", "25.00", "125.00", None),
        (1, "AccountOpened", "100.00", "100.00", None),
    ]
    alice_transfers = await accepted(
        await queries.get("/transfers", params={"account_id": alice}), 200
    )
    assert alice_transfers["total"] == 2
    assert {t["transfer_id"] for t in alice_transfers["items"]} == {
        moved["transfer_id"],
        refused["transfer_id"],
    }
