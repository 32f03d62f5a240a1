"""Transfers through the REST command API, as a client sends them, with the accounts service
and the transfers saga deciding: completed, failed, refunded, idempotent retries, and a
transfer's description from the request to both accounts' histories and the query API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from bank_accounts.settings import AccountsSettings
from bank_command_api.settings import CommandApiSettings
from bank_deploy.providers import Endpoints
from bank_shared.service import Platform
from bank_shared.topics import TopicSettings
from bank_transfers_saga.settings import SagaSettings
from tests import query_api_client
from tests.command_api_client import (
    QUERY_API,
    open_account,
    sent_so_far,
    serving,
    settings_for,
)
from tests.support import eventually, history, new_id
from tests.transfers_client import balance, finished_transfer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api_settings(infra: Endpoints, topics: TopicSettings) -> CommandApiSettings:
    return settings_for(infra, topics)


@pytest.fixture(scope="module")
async def api(
    api_settings: CommandApiSettings, accounts: Platform, saga: Platform
) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(api_settings) as client:
        yield client


async def transfer(
    api: httpx.AsyncClient, source: str, target: str, amount: str, **more: str
) -> str:
    answer = await api.post(
        "/transfers",
        json={"source_account_id": source, "target_account_id": target, "amount": amount, **more},
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


# --- descriptions -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def queries(infra: Endpoints, projector: Platform) -> AsyncIterator[httpx.AsyncClient]:
    """The query API on the read model the session's projector builds."""
    settings = query_api_client.settings_for(infra, infra.pg.read_db)
    async with query_api_client.serving(settings) as served:
        yield served.client


def descriptions(events: list[Any], *types: str) -> list[tuple[str, str | None]]:
    return [(e.type, e.payload["description"]) for e in events if e.type in types]


async def projected(queries: httpx.AsyncClient, transfer_id: str) -> dict[str, Any]:
    """The transfer as the query API shows it, once it is finished there and its source
    account is there too (the two are projected from different topics)."""
    found: dict[str, Any] = {}

    async def finished() -> bool:
        nonlocal found
        answer = await queries.get(f"/transfers/{transfer_id}")
        found = answer.json() if answer.status_code == 200 else {}
        return found.get("status") in ("completed", "failed") and bool(found["source_owner"])

    await eventually(finished, what=f"transfer {transfer_id} in the query API")
    return found


async def test_a_description_is_kept_trimmed_in_nfc_on_both_accounts_and_shown(
    api: httpx.AsyncClient,
    queries: httpx.AsyncClient,
    accounts_settings: AccountsSettings,
    saga_settings: SagaSettings,
) -> None:
    alice = await open_account(api, "100.00", "Alice")
    bob = await open_account(api, "0", "Bob")
    # "cafe" with a combining acute accent, and spaces around.
    kept = "Rent for March, caf\u00e9"

    transfer_id = await transfer(
        api, alice, bob, "30.00", description="  Rent for March, cafe\u0301 "
    )

    await finished_transfer(saga_settings.dsn, transfer_id)
    started = (await history(saga_settings.dsn, transfer_id))[0]
    assert (started.type, started.payload["description"]) == ("TransferStarted", kept)
    assert descriptions(await history(accounts_settings.dsn, alice), "MoneyWithdrawn") == [
        ("MoneyWithdrawn", kept)
    ]
    assert descriptions(await history(accounts_settings.dsn, bob), "MoneyDeposited") == [
        ("MoneyDeposited", kept)
    ]

    async def in_bobs_history() -> bool:
        items = (await queries.get(f"/accounts/{bob}/events")).json().get("items", [])
        return [(e["type"], e["description"]) for e in items] == [
            ("MoneyDeposited", kept),
            ("AccountOpened", None),
        ]

    await eventually(in_bobs_history, what="the deposit and its description in Bob's history")
    shown = await projected(queries, transfer_id)
    assert (shown["status"], shown["description"]) == ("completed", kept)
    assert (shown["source_owner"], shown["target_owner"]) == ("Alice", "Bob")
    listed = (await queries.get("/transfers", params={"account_id": bob})).json()["items"]
    assert [(t["transfer_id"], t["description"], t["target_owner"]) for t in listed] == [
        (transfer_id, kept, "Bob")
    ]


async def test_a_refund_carries_the_description_back_to_the_source(
    api: httpx.AsyncClient,
    queries: httpx.AsyncClient,
    accounts_settings: AccountsSettings,
    saga_settings: SagaSettings,
) -> None:
    alice = await open_account(api, "100.00", "Alice")
    nobody = new_id("nobody")

    transfer_id = await transfer(api, alice, nobody, "25.50", description="Birthday present")

    await finished_transfer(saga_settings.dsn, transfer_id)
    assert descriptions(
        await history(accounts_settings.dsn, alice), "MoneyWithdrawn", "MoneyDeposited"
    ) == [("MoneyWithdrawn", "Birthday present"), ("MoneyDeposited", "Birthday present")]
    shown = await projected(queries, transfer_id)
    assert (shown["reason"], shown["description"]) == (
        "target_account_not_found",
        "Birthday present",
    )
    # The target never existed: no owner to show, and the transfer is listed all the same.
    assert (shown["source_owner"], shown["target_owner"]) == ("Alice", None)


async def test_without_a_description_there_is_none_anywhere(
    api: httpx.AsyncClient, queries: httpx.AsyncClient, accounts_settings: AccountsSettings
) -> None:
    alice = await open_account(api, "10.00", "Alice")
    bob = await open_account(api, "0", "Bob")

    plain = await transfer(api, alice, bob, "1.00")
    null = await api.post(
        "/transfers",
        json={
            "source_account_id": alice,
            "target_account_id": bob,
            "amount": "1.00",
            "description": None,
        },
    )
    assert null.status_code == 202, null.text

    for transfer_id in (plain, null.json()["transfer_id"]):
        assert (await projected(queries, transfer_id))["description"] is None
    assert descriptions(await history(accounts_settings.dsn, bob), "MoneyDeposited") == [
        ("MoneyDeposited", None),
        ("MoneyDeposited", None),
    ]


async def test_a_description_of_140_characters_after_trimming_is_kept_whole(
    api: httpx.AsyncClient, saga_settings: SagaSettings
) -> None:
    longest = "x" * 139 + "."
    # Between accounts that do not exist: the saga fails it at once, after recording it.
    transfer_id = await transfer(
        api, new_id("nobody"), new_id("nobody"), "1", description=f"  {longest}\t"
    )

    await finished_transfer(saga_settings.dsn, transfer_id)
    started = (await history(saga_settings.dsn, transfer_id))[0]
    assert started.payload["description"] == longest


# Written as JSON escapes, as a client sends them.
REFUSED_DESCRIPTIONS = {
    "141 characters": "x" * 141,
    "141 characters between spaces": f"  {'x' * 141}  ",
    "empty": "",
    "only spaces": "   ",
    "bell": r"Rent\u0007",
    "newline": r"Rent\nfor March",
    "right-to-left override": r"\u202eRent",
    "zero-width space": r"Re\u200bnt",
    "a number": 42,
}


@pytest.mark.parametrize(
    "description", REFUSED_DESCRIPTIONS.values(), ids=REFUSED_DESCRIPTIONS.keys()
)
async def test_a_refused_description_is_422_names_the_field_and_sends_nothing(
    api: httpx.AsyncClient, api_settings: CommandApiSettings, description: str | int
) -> None:
    before = await sent_so_far(api_settings)
    value = f'"{description}"' if isinstance(description, str) else str(description)
    answer = await api.post(
        "/transfers",
        content=f'{{"source_account_id": "a", "target_account_id": "b", "amount": "5",'
        f' "description": {value}}}',
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert problem["code"] == "validation_error"
    [field] = problem["errors"]
    assert field["field"] == "description"
    assert await sent_so_far(api_settings) == before


async def test_a_control_character_is_refused_in_the_words_used_for_names(
    api: httpx.AsyncClient,
) -> None:
    answer = await api.post(
        "/transfers",
        content=r'{"source_account_id": "a", "target_account_id": "b", "amount": "5",'
        r' "description": "Rent\u0007"}',
        headers={"content-type": "application/json"},
    )
    [field] = answer.json()["errors"]
    assert field["type"] == "invalid_text"
    assert "U+0007" in field["message"]
    assert "which a description may not hold" in field["message"]
    assert "send letters, digits, spaces and punctuation only" in field["message"]


async def test_a_key_retried_with_another_description_is_refused_and_sends_nothing(
    api: httpx.AsyncClient, api_settings: CommandApiSettings, saga_settings: SagaSettings
) -> None:
    alice = await open_account(api, "100.00", "Alice")
    bob = await open_account(api, "0", "Bob")
    body = {"source_account_id": alice, "target_account_id": bob, "amount": "40.00"}
    headers = {"Idempotency-Key": new_id("memo")}
    first = await api.post(
        "/transfers", json={**body, "description": "Rent for March"}, headers=headers
    )
    assert first.status_code == 202, first.text
    before = await sent_so_far(api_settings)

    # The same description but for the spaces around it: the same request, the same answer.
    again = await api.post(
        "/transfers", json={**body, "description": " Rent for March  "}, headers=headers
    )
    assert (again.status_code, again.json()) == (202, first.json())
    for other in ("Rent for April", None):
        reused = await api.post("/transfers", json={**body, "description": other}, headers=headers)
        assert reused.status_code == 422, reused.text
        assert reused.json()["code"] == "idempotency_key_reused"
    without = await api.post("/transfers", json=body, headers=headers)
    assert without.json()["code"] == "idempotency_key_reused"
    assert await sent_so_far(api_settings) == before
    await finished_transfer(saga_settings.dsn, first.json()["transfer_id"])


async def test_a_key_used_without_a_description_matches_its_retry_with_null(
    api: httpx.AsyncClient, api_settings: CommandApiSettings
) -> None:
    body = {"source_account_id": new_id("nobody"), "target_account_id": "b", "amount": "1"}
    headers = {"Idempotency-Key": new_id("plain")}
    first = await api.post("/transfers", json=body, headers=headers)
    before = await sent_so_far(api_settings)

    again = await api.post("/transfers", json={**body, "description": None}, headers=headers)

    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()
    assert await sent_so_far(api_settings) == before
