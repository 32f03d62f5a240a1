"""The whole bank, driven only through HTTP as a client would: the demo's story, and
concurrent transfers that end with the money conserved."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from decimal import Decimal
from typing import Any

import httpx
import pytest

from bank_deploy import demo
from tests.e2e.conftest import Cluster
from tests.logins import bearer
from tests.support import eventually, new_id

pytestmark = pytest.mark.e2e


def test_the_demo_story_goes_as_told(cluster: Cluster) -> None:
    assert demo.main(["--command-api", cluster.command_api, "--query-api", cluster.query_api]) == 0


async def test_concurrent_transfers_among_a_few_accounts_conserve_the_money(
    cluster: Cluster,
) -> None:
    rng = random.Random(7)
    async with (
        httpx.AsyncClient(base_url=cluster.command_api, headers=bearer(), timeout=30) as commands,
        httpx.AsyncClient(base_url=cluster.query_api, headers=bearer(), timeout=30) as queries,
    ):
        accounts = []
        for _ in range(5):
            answer = await commands.post(
                "/accounts",
                json={"owner": "E2E", "initial_balance": "100.00", "account_id": new_id("e2e")},
            )
            assert answer.status_code == 201, answer.text
            accounts.append(answer.json()["account_id"])

        async def transfer() -> str:
            source, target = rng.sample(accounts, 2)
            amount = f"{rng.randint(1, 8000) / 100:.2f}"  # some exceed what the source holds
            answer = await commands.post(
                "/transfers",
                json={"source_account_id": source, "target_account_id": target, "amount": amount},
            )
            assert answer.status_code == 202, answer.text
            transfer_id: str = answer.json()["transfer_id"]
            return transfer_id

        transfer_ids = await asyncio.gather(*(transfer() for _ in range(40)))

        async def settled() -> bool:
            for transfer_id in transfer_ids:
                answer = await queries.get(f"/transfers/{transfer_id}")
                if answer.status_code != 200 or answer.json()["status"] not in (
                    "completed",
                    "failed",
                ):
                    return False
            return True

        await eventually(settled, within=120, what="every transfer to finish")
        finished = {t: (await queries.get(f"/transfers/{t}")).json() for t in transfer_ids}

        async def effects() -> dict[str, Counter[str]]:
            """Each transfer's debits, credits and refunds, as the accounts' histories show."""
            found: dict[str, Counter[str]] = {t: Counter() for t in transfer_ids}
            for account in accounts:
                history = await queries.get(f"/accounts/{account}/events", params={"limit": 500})
                for event in history.json()["items"]:
                    transfer = finished.get(event["transfer_id"])
                    if transfer is None:
                        continue
                    assert Decimal(event["amount"]) == Decimal(transfer["amount"]), event
                    if event["type"] == "MoneyWithdrawn":
                        kind = "debit"
                    elif account == transfer["source_account_id"]:
                        kind = "refund"
                    else:
                        kind = "credit"
                    found[event["transfer_id"]][kind] += 1
            return found

        def expected(transfer: dict[str, Any]) -> Counter[str]:
            if transfer["status"] == "completed":
                return Counter(debit=1, credit=1)
            # Failed: refused before the debit, or debited and refunded.
            return Counter(debit=1, refund=1) if transfer["refunded"] else Counter()

        # The transfers' rows and the accounts' rows come from two topics: wait for both.
        async def every_transfer_moved_its_money_once() -> bool:
            seen = await effects()
            return all(seen[t] == expected(finished[t]) for t in transfer_ids)

        await eventually(every_transfer_moved_its_money_once, what="each transfer's effects")
        balances = await balances_via(cluster, accounts)
    assert sum(balances) == Decimal("500.00")
    assert all(b >= 0 for b in balances)
    assert {t["status"] for t in finished.values()} <= {"completed", "failed"}
    assert any(t["status"] == "completed" for t in finished.values())


async def balances_via(cluster: Cluster, accounts: list[str]) -> list[Decimal]:
    async with httpx.AsyncClient(
        base_url=cluster.query_api, headers=bearer(), timeout=30
    ) as queries:
        return [Decimal((await queries.get(f"/accounts/{a}")).json()["balance"]) for a in accounts]
