"""The whole bank, driven only through HTTP as a client would: the demo's story, and
concurrent transfers that end with the money conserved."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal

import httpx
import pytest

from bank_deploy import demo
from tests.e2e.conftest import Cluster
from tests.support import eventually, new_id

pytestmark = pytest.mark.e2e


def test_the_demo_story_goes_as_told(cluster: Cluster) -> None:
    assert demo.main(["--command-api", cluster.command_api, "--query-api", cluster.query_api]) == 0


async def test_concurrent_transfers_among_a_few_accounts_conserve_the_money(
    cluster: Cluster,
) -> None:
    rng = random.Random(7)
    async with (
        httpx.AsyncClient(base_url=cluster.command_api, timeout=30) as commands,
        httpx.AsyncClient(base_url=cluster.query_api, timeout=30) as queries,
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
        finished = [(await queries.get(f"/transfers/{t}")).json() for t in transfer_ids]

        async def balances() -> list[Decimal]:
            found = []
            for account in accounts:
                row = (await queries.get(f"/accounts/{account}")).json()
                found.append(Decimal(row["balance"]))
            return found

        # The transfers' rows and the accounts' rows come from two topics: wait for both.
        async def conserved() -> bool:
            return sum(await balances()) == Decimal("500.00")

        await eventually(conserved, what="the balances to add up to 500.00")
    assert all(b >= 0 for b in await balances_via(cluster, accounts))
    assert {t["status"] for t in finished} <= {"completed", "failed"}
    assert any(t["status"] == "completed" for t in finished)


async def balances_via(cluster: Cluster, accounts: list[str]) -> list[Decimal]:
    async with httpx.AsyncClient(base_url=cluster.query_api, timeout=30) as queries:
        return [Decimal((await queries.get(f"/accounts/{a}")).json()["balance"]) for a in accounts]
