"""`make demo`: the tutorial's story told through the two REST APIs of a running bank.

Everyone logs in first (`POST /token`, with the demo passwords `make run` wrote). The teller
opens accounts for Alice and Bob with money in them and takes Alice's cash; Alice sends Bob
money (with a description, as a person would: "Rent for March"), tries to take money from
Bob's account (to her, it does not exist), sends more than she has, sends some to an account
that does not exist (refunded); Bob tries to withdraw more than he has; each reads their own
history. Each step checks what it sees; the demo exits with status 1 at the first surprise.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from bank_deploy.config import LauncherConfig, launcher_auth
from bank_deploy.credentials import demo_passwords
from bank_shared.contracts.actors import TELLER
from bank_shared.settings import AuthSettings

COMMANDS = os.environ.get("BANK_DEMO_COMMAND_API", "http://127.0.0.1:8001")
QUERIES = os.environ.get("BANK_DEMO_QUERY_API", "http://127.0.0.1:8002")


class StoryBroken(Exception):  # noqa: N818 (a story is broken, not an error type name)
    """The bank did not behave as the story says."""


class NoLogins(Exception):  # noqa: N818 (the story cannot start: no one can log in)
    """The demo users' passwords cannot be read."""


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


@dataclass(frozen=True)
class Login:
    """Someone logged in: what they send with every request."""

    name: str
    headers: dict[str, str]


def passwords(auth: AuthSettings) -> dict[str, str]:
    """The demo users' passwords, or what to do when they cannot be read."""
    logins = auth.logins_file
    try:
        return demo_passwords(auth)
    except FileNotFoundError:
        raise NoLogins(
            f"No demo logins at {logins}: `make run` (or `make start`) makes them when it starts"
            " the bank, and prints where they are; `make compose-up` does the same for the"
            " containers. Start the bank first, then run `make demo` again."
        ) from None
    except PermissionError:
        raise NoLogins(
            f"Cannot read {logins}: only the user who started the bank may. Run `make demo` as"
            " that user."
        ) from None


class Bank:
    def __init__(self, commands: httpx.Client, queries: httpx.Client, auth: AuthSettings) -> None:
        self.commands = commands
        self.queries = queries
        self.logins = auth.logins_file
        # Read first: without them the story cannot start, and says what to do.
        self.passwords = passwords(auth)

    def log_in(self, name: str, password: str) -> Login:
        answer = self.commands.post("/token", data={"username": name, "password": password})
        if answer.status_code == 401:
            raise StoryBroken(
                f"The bank refused {name}'s password from {self.logins}: it was started with"
                " other logins (another state directory, or BANK_AUTH_DIR). Run `make demo`"
                " with the BANK_STATE_DIR (or BANK_AUTH_DIR) the bank was started with, or"
                " restart the bank: make stop, then make run."
            )
        token = expect(answer, 200)
        minutes = token["expires_in"] / 60
        show(f"{name}: logged in, a bearer token valid for {minutes:.0f} minutes")
        return Login(name, {"Authorization": f"Bearer {token['access_token']}"})

    def account(self, who: Login, account_id: str, version: int | None = None) -> dict[str, Any]:
        # Read-your-writes: answered once the read model has applied `version`.
        params = {} if version is None else {"min_version": version}
        return expect(
            self.queries.get(f"/accounts/{account_id}", params=params, headers=who.headers), 200
        )

    def open(self, teller: Login, owner: Login, balance: str, suffix: str) -> str:
        account_id = f"{owner.name}-{suffix}"
        body = expect(
            self.commands.post(
                "/accounts",
                json={
                    "owner": owner.name.capitalize(),
                    "owned_by": owner.name,
                    "initial_balance": balance,
                    "account_id": account_id,
                },
                headers=teller.headers,
            ),
            201,
        )
        seen = self.account(owner, account_id, body["version"])
        show(f"{owner.name} owns account {account_id}, balance {seen['balance']} EUR")
        check(seen["balance"] == body["balance"], f"{owner.name}'s read balance differs")
        return account_id

    def transfer(
        self, who: Login, source: str, target: str, amount: str, description: str
    ) -> dict[str, Any]:
        body = expect(
            self.commands.post(
                "/transfers",
                json={
                    "source_account_id": source,
                    "target_account_id": target,
                    "amount": amount,
                    "description": description,
                },
                headers=who.headers,
            ),
            202,
        )
        transfer_id = body["transfer_id"]
        show(f'transfer {transfer_id} "{description}" accepted; following it in the query API:')
        statuses: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            answer = self.queries.get(f"/transfers/{transfer_id}", headers=who.headers)
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

    def refused(self, answer: httpx.Response, status: int, code: str) -> None:
        problem = expect(answer, status)
        check(problem["code"] == code, f"the refusal should be {code}: {problem}")
        show(f"{status} {problem['code']}: {problem['message']}")
        if "detail says" in problem["message"] and problem.get("detail"):
            show(f"    detail: {problem['detail']}")

    def history(self, who: Login, account_id: str) -> None:
        items = expect(
            self.queries.get(f"/accounts/{account_id}/events", headers=who.headers), 200
        )["items"]
        for item in items:
            via = f"  (transfer {item['transfer_id']})" if item["transfer_id"] else ""
            if item["description"]:
                via += f' "{item["description"]}"'
            show(
                f"v{item['version']:<3} {item['type']:<15} {item['amount']:>8}"
                f"  -> {item['balance_after']:>8}{via}"
            )


def parties(transfer: dict[str, Any]) -> str:
    """Who sends to whom: by name where the read model shows the caller the owner."""

    def name(side: str) -> str:
        account = transfer[f"{side}_account_id"]
        owner = transfer.get(f"{side}_owner")
        return f"{owner} ({account})" if owner else account

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
    step("Nobody has logged in yet: the bank moves no money for a stranger")
    stranger = bank.commands.post(
        "/transfers",
        json={"source_account_id": "anyone", "target_account_id": "me", "amount": "1.00"},
    )
    bank.refused(stranger, 401, "not_authenticated")

    step(f"The teller, Alice and Bob log in (POST /token, passwords from {bank.logins})")
    teller, alice, bob = (
        bank.log_in(name, bank.passwords[name]) for name in (TELLER, "alice", "bob")
    )

    step("The teller opens an account for Alice with 100.00 EUR, and one for Bob with 50.00 EUR")
    alice_account = bank.open(teller, alice, "100.00", suffix)
    bob_account = bank.open(teller, bob, "50.00", suffix)

    step("Alice wants to pay in 25.00 EUR in cash: only a teller takes cash")
    own_cash = bank.commands.post(
        f"/accounts/{alice_account}/deposits", json={"amount": "25.00"}, headers=alice.headers
    )
    bank.refused(own_cash, 403, "teller_only")
    show("so she hands it to the teller, who deposits it:")
    deposit = expect(
        bank.commands.post(
            f"/accounts/{alice_account}/deposits", json={"amount": "25.00"}, headers=teller.headers
        ),
        200,
    )
    show(f"accepted: version {deposit['version']}, balance {deposit['balance']} EUR")
    check(
        bank.account(alice, alice_account, deposit["version"])["balance"] == "125.00",
        "Alice should hold 125",
    )

    step("Alice sends Bob 30.00 EUR: withdraw from Alice, deposit to Bob, complete")
    done = bank.transfer(alice, alice_account, bob_account, "30.00", "Rent for March")
    check(done["status"] == "completed", f"the transfer should complete: {done}")
    check(done.get("debited_at") is not None, f"a completed transfer was debited first: {done}")
    alice_after = bank.account(alice, alice_account, 3)
    bob_after = bank.account(bob, bob_account, 2)
    show(f"Alice now holds {alice_after['balance']} EUR, Bob {bob_after['balance']} EUR")
    check(alice_after["balance"] == "95.00", "Alice should hold 95.00")
    check(bob_after["balance"] == "80.00", "Bob should hold 80.00")

    step(f"Alice tries to withdraw 10.00 EUR from Bob's account {bob_account}")
    taking = bank.commands.post(
        f"/accounts/{bob_account}/withdrawals", json={"amount": "10.00"}, headers=alice.headers
    )
    bank.refused(taking, 404, "account_not_found")
    show("and to send its money to herself:")
    moving = bank.commands.post(
        "/transfers",
        json={
            "source_account_id": bob_account,
            "target_account_id": alice_account,
            "amount": "10.00",
        },
        headers=alice.headers,
    )
    bank.refused(moving, 404, "account_not_found")
    show("This is ownership at work: only Bob (or a teller) may take money from Bob's account.")
    show("To Alice it is as if it did not exist, the answer for an account that really does")
    show("not, so she cannot even find out which account ids are taken.")
    check(bank.account(bob, bob_account)["balance"] == "80.00", "Bob should still hold 80.00")
    show("Bob still holds 80.00 EUR")

    step("Alice tries to send Bob 1000.00 EUR: she has 95.00")
    refused = bank.transfer(alice, alice_account, bob_account, "1000.00", "A new car")
    check(
        (refused["status"], refused["reason"]) == ("failed", "insufficient_funds"),
        f"the transfer should fail for insufficient funds: {refused}",
    )
    show("no money moved")

    step("Alice sends 10.00 EUR to an account that does not exist")
    nowhere = bank.transfer(alice, alice_account, f"nobody-{suffix}", "10.00", "Birthday present")
    check(
        (nowhere["status"], nowhere["reason"], nowhere.get("refunded"))
        == ("failed", "target_account_not_found", True),
        f"the transfer should fail and refund Alice: {nowhere}",
    )
    alice_now = bank.account(alice, alice_account, 5)
    show(f"Alice was debited, then refunded: she holds {alice_now['balance']} EUR again")
    check(alice_now["balance"] == "95.00", "Alice should be back at 95.00")

    step("Overdrafts are refused at once: Bob withdraws 500.00 EUR from his own account")
    overdraft = bank.commands.post(
        f"/accounts/{bob_account}/withdrawals", json={"amount": "500.00"}, headers=bob.headers
    )
    bank.refused(overdraft, 409, "insufficient_funds")

    step("Alice reads her history, newest first")
    bank.history(alice, alice_account)
    step("Bob reads his")
    bank.history(bob, bob_account)
    print("\n✔ The story went as told.", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__)
    parser.add_argument("--command-api", default=COMMANDS)
    parser.add_argument("--query-api", default=QUERIES)
    args = parser.parse_args(argv)
    # Where `make run` (or `make compose-up`) wrote them: BANK_AUTH_DIR, else .bank/auth.
    auth = launcher_auth(LauncherConfig(), os.environ)
    try:
        with (
            httpx.Client(base_url=args.command_api, timeout=30) as commands,
            httpx.Client(base_url=args.query_api, timeout=30) as queries,
        ):
            story(Bank(commands, queries, auth))
    except httpx.TransportError as error:
        print(
            f"\n✘ Cannot reach the bank ({error}). Start it first: make run (or make start).",
            file=sys.stderr,
        )
        return 1
    except NoLogins as missing:
        print(f"\n✘ {missing}", file=sys.stderr)
        return 1
    except StoryBroken as broken:
        print(f"\n✘ The story broke: {broken}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
