"""`make demo`: the tutorial's story told through the two REST APIs of a running bank.

Alice and Bob open accounts, Alice deposits, sends Bob money (with a description, as a person
would: "Rent for March"), Bob tries a transfer he cannot afford, Alice sends some to an account
that does not exist (refunded), and their histories are shown, descriptions included.
Each step checks what it sees; the demo exits with status 1 at the first surprise.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from datetime import datetime
from typing import Any

import httpx

COMMANDS = os.environ.get("BANK_DEMO_COMMAND_API", "http://127.0.0.1:8001")
QUERIES = os.environ.get("BANK_DEMO_QUERY_API", "http://127.0.0.1:8002")


class StoryBroken(Exception):  # noqa: N818 (a story is broken, not an error type name)
    """The bank did not behave as the story says."""


def step(text: str) -> None:
    print(f"\n▶ {text}", flush=True)


def show(text: str) -> None:
    print(f"    {text}", flush=True)


def expect(answer: httpx.Response, status: int) -> dict[str, Any]:
    if answer.status_code != status:
        raise StoryBroken(
            f"{answer.request.method} {answer.request.url} answered {answer.status_code}, "
            f"expected {status}: {answer.text}"
        )
    body: dict[str, Any] = answer.json()
    return body


def check(condition: bool, what: str) -> None:
    if not condition:
        raise StoryBroken(what)


class Bank:
    def __init__(self, commands: httpx.Client, queries: httpx.Client) -> None:
        self.commands = commands
        self.queries = queries

    def account(self, account_id: str, version: int) -> dict[str, Any]:
        # Read-your-writes: answered once the read model has applied `version`.
        return expect(
            self.queries.get(f"/accounts/{account_id}", params={"min_version": version}), 200
        )

    def open(self, owner: str, balance: str, suffix: str) -> str:
        account_id = f"{owner.lower()}-{suffix}"
        body = expect(
            self.commands.post(
                "/accounts",
                json={"owner": owner, "initial_balance": balance, "account_id": account_id},
            ),
            201,
        )
        seen = self.account(account_id, body["version"])
        show(f"{owner}: account {account_id}, balance {seen['balance']} EUR")
        check(seen["balance"] == body["balance"], f"{owner}'s read balance differs")
        return account_id

    def transfer(self, source: str, target: str, amount: str, description: str) -> dict[str, Any]:
        body = expect(
            self.commands.post(
                "/transfers",
                json={
                    "source_account_id": source,
                    "target_account_id": target,
                    "amount": amount,
                    "description": description,
                },
            ),
            202,
        )
        transfer_id = body["transfer_id"]
        show(f'transfer {transfer_id} "{description}" accepted; following it in the query API:')
        statuses: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            answer = self.queries.get(f"/transfers/{transfer_id}")
            if answer.status_code == 200:
                transfer: dict[str, Any] = answer.json()
                if not statuses or statuses[-1] != transfer["status"]:
                    statuses.append(transfer["status"])
                    show(
                        f"  ... {transfer['status']}"
                        + (f" ({transfer['reason']})" if transfer.get("reason") else "")
                    )
                if transfer["status"] in ("completed", "failed"):
                    show(f"  timeline: {timeline(transfer)}")
                    show(f'  {parties(transfer)}: "{transfer["description"]}"')
                    check(
                        transfer["description"] == description,
                        f"the read model should keep the description: {transfer}",
                    )
                    return transfer
            time.sleep(0.02)
        raise StoryBroken(f"transfer {transfer_id} did not finish within 30 s: {statuses}")

    def history(self, account_id: str) -> None:
        items = expect(self.queries.get(f"/accounts/{account_id}/events"), 200)["items"]
        for item in items:
            via = f"  (transfer {item['transfer_id']})" if item["transfer_id"] else ""
            if item["description"]:
                via += f' "{item["description"]}"'
            show(
                f"v{item['version']:<3} {item['type']:<15} {item['amount']:>8}"
                f"  -> {item['balance_after']:>8}{via}"
            )


def parties(transfer: dict[str, Any]) -> str:
    """Who sends to whom, by name where the read model has the account."""

    def name(side: str) -> str:
        account = transfer[f"{side}_account_id"]
        owner = transfer.get(f"{side}_owner")
        return f"{owner} ({account})" if owner else f"{account} (unknown account)"

    return f"from {name('source')} to {name('target')}"


def timeline(transfer: dict[str, Any]) -> str:
    """started -> debited -> completed/failed, in milliseconds from the start: the steps the
    saga took, even when they were too quick to be seen between two polls."""
    started = datetime.fromisoformat(transfer["started_at"])
    steps = ["started"]
    for label, key in (("debited", "debited_at"), (transfer["status"], "finished_at")):
        if transfer.get(key):
            elapsed = (datetime.fromisoformat(transfer[key]) - started).total_seconds() * 1000
            steps.append(f"{label} (+{elapsed:.0f} ms)")
    return " -> ".join(steps)


def story(bank: Bank) -> None:
    suffix = uuid.uuid4().hex[:6]
    step("Alice opens an account with 100.00 EUR, Bob with 50.00 EUR")
    alice = bank.open("Alice", "100.00", suffix)
    bob = bank.open("Bob", "50.00", suffix)

    step("Alice deposits 25.00 EUR")
    deposit = expect(
        bank.commands.post(f"/accounts/{alice}/deposits", json={"amount": "25.00"}), 200
    )
    show(f"accepted: version {deposit['version']}, balance {deposit['balance']} EUR")
    check(bank.account(alice, deposit["version"])["balance"] == "125.00", "Alice should hold 125")

    step("Alice sends Bob 30.00 EUR: withdraw from Alice, deposit to Bob, complete")
    done = bank.transfer(alice, bob, "30.00", "Rent for March")
    check(done["status"] == "completed", f"the transfer should complete: {done}")
    check(done.get("debited_at") is not None, f"a completed transfer was debited first: {done}")
    alice_after, bob_after = bank.account(alice, 3), bank.account(bob, 2)
    show(f"Alice now holds {alice_after['balance']} EUR, Bob {bob_after['balance']} EUR")
    check(alice_after["balance"] == "95.00", "Alice should hold 95.00")
    check(bob_after["balance"] == "80.00", "Bob should hold 80.00")

    step("Bob tries to send Alice 1000.00 EUR: he has 80.00")
    refused = bank.transfer(bob, alice, "1000.00", "A new car")
    check(
        (refused["status"], refused["reason"]) == ("failed", "insufficient_funds"),
        f"the transfer should fail for insufficient funds: {refused}",
    )
    show("no money moved")

    step("Alice sends 10.00 EUR to an account that does not exist")
    nowhere = bank.transfer(alice, f"nobody-{suffix}", "10.00", "Birthday present")
    check(
        (nowhere["status"], nowhere["reason"], nowhere.get("refunded"))
        == ("failed", "target_account_not_found", True),
        f"the transfer should fail and refund Alice: {nowhere}",
    )
    alice_now = bank.account(alice, 5)
    show(f"Alice was debited, then refunded: she holds {alice_now['balance']} EUR again")
    check(alice_now["balance"] == "95.00", "Alice should be back at 95.00")

    step("Overdrafts are refused at once: Bob withdraws 500.00 EUR")
    overdraft = bank.commands.post(f"/accounts/{bob}/withdrawals", json={"amount": "500.00"})
    problem = expect(overdraft, 409)
    show(f"409 {problem['code']}: {problem['message']}")

    step("Alice's history, newest first")
    bank.history(alice)
    step("Bob's history, newest first")
    bank.history(bob)
    print("\n✔ The story went as told.", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__)
    parser.add_argument("--command-api", default=COMMANDS)
    parser.add_argument("--query-api", default=QUERIES)
    args = parser.parse_args(argv)
    try:
        with (
            httpx.Client(base_url=args.command_api, timeout=30) as commands,
            httpx.Client(base_url=args.query_api, timeout=30) as queries,
        ):
            story(Bank(commands, queries))
    except httpx.TransportError as error:
        print(
            f"\n✘ Cannot reach the bank ({error}). Start it first: make run (or make start).",
            file=sys.stderr,
        )
        return 1
    except StoryBroken as broken:
        print(f"\n✘ The story broke: {broken}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
