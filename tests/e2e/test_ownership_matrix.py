"""Object-level authorization, route by route (OWASP API1): Alice acting on Bob's account,
transfer or command is refused as if it did not exist, and no event store changes.

The routes come from both APIs' OpenAPI documents: a route without an entry in MATRIX (or in
NO_OBJECT) fails the suite, and so does a route whose entry disagrees with what it takes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from tests.e2e.conftest import Cluster
from tests.logins import bearer
from tests.support import eventually

pytestmark = pytest.mark.e2e

ALICE, BOB, TELLER = "alice", "bob", "teller"


@dataclass(frozen=True)
class World:
    """What belongs to whom: Bob's account and his transfer to the teller's touch none of
    Alice's."""

    alice_account: str
    bob_account: str
    teller_account: str
    bob_transfer: str
    bob_command: str

    @property
    def accounts(self) -> list[str]:
        return [self.alice_account, self.bob_account, self.teller_account]


@dataclass(frozen=True)
class Attempt:
    """Alice's request that names something of Bob's, and the refusal it must get; then the
    same request by `control` (Bob or the teller), which must get `control_status`."""

    api: str
    method: str
    url: Callable[[World], str]
    body: Callable[[World], dict[str, Any]] | None
    status: int
    code: str
    control: str | None = None
    control_status: int | None = None


def _get(api: str, url: Callable[[World], str], code: str) -> Attempt:
    return Attempt(api, "GET", url, None, 404, code, control=BOB, control_status=200)


# (api, method, path) -> what Alice tries with Bob's ids there. Customers cannot choose ids,
# so naming Bob's id as a *new* account or transfer is 403 teller_only: refused before the id
# is looked at, so it tells nothing about it either.
MATRIX: dict[tuple[str, str, str], list[Attempt]] = {
    ("command", "POST", "/accounts"): [
        Attempt(
            "command",
            "POST",
            lambda w: "/accounts",
            lambda w: {"owner": "Alice", "account_id": w.bob_account},
            403,
            "teller_only",
        )
    ],
    ("command", "POST", "/accounts/{account_id}/deposits"): [
        Attempt(
            "command",
            "POST",
            lambda w: f"/accounts/{w.bob_account}/deposits",
            lambda w: {"amount": "1.00"},
            404,
            "account_not_found",
            control=TELLER,
            control_status=200,
        )
    ],
    ("command", "POST", "/accounts/{account_id}/withdrawals"): [
        Attempt(
            "command",
            "POST",
            lambda w: f"/accounts/{w.bob_account}/withdrawals",
            lambda w: {"amount": "1.00"},
            404,
            "account_not_found",
            control=BOB,
            control_status=200,
        )
    ],
    ("command", "POST", "/transfers"): [
        Attempt(
            "command",
            "POST",
            lambda w: "/transfers",
            lambda w: {
                "source_account_id": w.bob_account,
                "target_account_id": w.alice_account,
                "amount": "1.00",
            },
            404,
            "account_not_found",
            control=BOB,
            control_status=202,
        ),
        Attempt(
            "command",
            "POST",
            lambda w: "/transfers",
            lambda w: {
                "source_account_id": w.alice_account,
                "target_account_id": w.teller_account,
                "amount": "1.00",
                "transfer_id": w.bob_transfer,
            },
            403,
            "teller_only",
        ),
    ],
    ("command", "GET", "/commands/{command_id}"): [
        _get("command", lambda w: f"/commands/{w.bob_command}", "command_not_found")
    ],
    ("query", "GET", "/accounts/{account_id}"): [
        _get("query", lambda w: f"/accounts/{w.bob_account}", "account_not_found"),
        _get("query", lambda w: f"/accounts/{w.bob_account}?min_version=1", "account_not_found"),
    ],
    ("query", "GET", "/accounts/{account_id}/events"): [
        _get("query", lambda w: f"/accounts/{w.bob_account}/events", "account_not_found")
    ],
    ("query", "GET", "/transfers"): [
        _get("query", lambda w: f"/transfers?account_id={w.bob_account}", "account_not_found")
    ],
    ("query", "GET", "/transfers/{transfer_id}"): [
        _get("query", lambda w: f"/transfers/{w.bob_transfer}", "transfer_not_found")
    ],
}

# Routes that name no account, transfer or command: nothing of Bob's to ask for. Lists are
# scoped to the caller; that is tested with the query API (test_query_api_scoping.py).
NO_OBJECT = {
    ("command", "POST", "/token"),
    ("command", "GET", "/health"),
    ("command", "GET", "/ready"),
    ("query", "GET", "/accounts"),
    ("query", "GET", "/changes"),
    ("query", "GET", "/health"),
    ("query", "GET", "/ready"),
}


# What names an object someone owns (`source_account_id` too; not OAuth2's `client_id`).
OBJECT_IDS = ("account_id", "transfer_id", "command_id")


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    resolved: dict[str, Any] = spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    return resolved


def _ids_taken(spec: dict[str, Any], operation: dict[str, Any]) -> set[str]:
    """The names of the ids a route takes: path and query parameters, body fields."""
    names = {p["name"] for p in operation.get("parameters", []) if p["in"] in ("path", "query")}
    body = operation.get("requestBody", {}).get("content", {})
    for media in body.values():
        names |= set(_resolve(spec, media.get("schema", {})).get("properties", {}))
    return {name for name in names if name.endswith(OBJECT_IDS)}


def _routes(specs: dict[str, dict[str, Any]]) -> Iterator[tuple[tuple[str, str, str], set[str]]]:
    for api, spec in specs.items():
        for path, operations in spec["paths"].items():
            for method, operation in operations.items():
                yield (api, method.upper(), path), _ids_taken(spec, operation)


async def _open_account(commands: httpx.AsyncClient, owned_by: str, balance: str) -> str:
    answer = await commands.post(
        "/accounts",
        json={"owner": owned_by.title(), "owned_by": owned_by, "initial_balance": balance},
        headers=bearer(),
    )
    assert answer.status_code == 201, answer.text
    account_id: str = answer.json()["account_id"]
    return account_id


async def _event_counts(cluster: Cluster, world: World) -> tuple[int, int]:
    """Events of the three accounts, and of the transfers that touch them."""
    accounts = await asyncpg.connect(cluster.pg.dsn(cluster.pg.accounts_db))
    transfers = await asyncpg.connect(cluster.pg.dsn(cluster.pg.transfers_db))
    try:
        in_accounts: int = await accounts.fetchval(
            "SELECT count(*) FROM events WHERE stream_id = ANY($1)", world.accounts
        )
        in_transfers: int = await transfers.fetchval(
            "SELECT count(*) FROM events WHERE stream_id IN (SELECT stream_id FROM events"
            " WHERE envelope->'payload'->>'source_account_id' = ANY($1)"
            " OR envelope->'payload'->>'target_account_id' = ANY($1))",
            world.accounts,
        )
        return in_accounts, in_transfers
    finally:
        await accounts.close()
        await transfers.close()


async def test_every_route_that_names_an_object_refuses_another_customers_and_writes_nothing(
    cluster: Cluster,
) -> None:
    urls = {"command": cluster.command_api, "query": cluster.query_api}
    async with httpx.AsyncClient(timeout=30) as http:
        specs = {api: (await http.get(f"{url}/openapi.json")).json() for api, url in urls.items()}
        routes = dict(_routes(specs))
        assert set(routes) == set(MATRIX) | NO_OBJECT, (
            "every route needs an entry in MATRIX (it names an account, transfer or command)"
            " or in NO_OBJECT"
        )
        assert {route for route, ids in routes.items() if ids} == set(MATRIX)

        commands = httpx.AsyncClient(base_url=cluster.command_api, timeout=30)
        queries = httpx.AsyncClient(base_url=cluster.query_api, timeout=30)
        async with commands, queries:
            world = await _bobs_world(commands, queries)
            before = await _event_counts(cluster, world)
            clients = {"command": commands, "query": queries}
            for route, attempts in MATRIX.items():
                for attempt in attempts:
                    answer = await clients[attempt.api].request(
                        attempt.method,
                        attempt.url(world),
                        json=attempt.body(world) if attempt.body else None,
                        headers=bearer(ALICE),
                    )
                    assert (answer.status_code, answer.json().get("code")) == (
                        attempt.status,
                        attempt.code,
                    ), f"{route}: {answer.text}"
            # A fence: a command on Bob's account decided after Alice's, on the same partition,
            # so anything her commands would have written is written by now.
            fence = await commands.post(
                f"/accounts/{world.bob_account}/deposits", json={"amount": "0.01"}, headers=bearer()
            )
            assert fence.status_code == 200, fence.text
            assert await _event_counts(cluster, world) == (before[0] + 1, before[1])

            for route, attempts in MATRIX.items():
                for attempt in attempts:
                    if attempt.control is None:
                        continue
                    answer = await clients[attempt.api].request(
                        attempt.method,
                        attempt.url(world),
                        json=attempt.body(world) if attempt.body else None,
                        headers=bearer(attempt.control),
                    )
                    assert answer.status_code == attempt.control_status, f"{route}: {answer.text}"


async def _bobs_world(commands: httpx.AsyncClient, queries: httpx.AsyncClient) -> World:
    alice_account = await _open_account(commands, ALICE, "100.00")
    bob_account = await _open_account(commands, BOB, "100.00")
    teller_account = await _open_account(commands, TELLER, "0")
    withdrawal = await commands.post(
        f"/accounts/{bob_account}/withdrawals", json={"amount": "1.00"}, headers=bearer(BOB)
    )
    assert withdrawal.status_code == 200, withdrawal.text
    started = await commands.post(
        "/transfers",
        json={"source_account_id": bob_account, "target_account_id": teller_account, "amount": "5"},
        headers=bearer(BOB),
    )
    assert started.status_code == 202, started.text
    transfer_id: str = started.json()["transfer_id"]

    async def projected() -> bool:
        answer = await queries.get(f"/transfers/{transfer_id}", headers=bearer())
        return answer.status_code == 200 and answer.json()["status"] == "completed"

    await eventually(projected, what=f"transfer {transfer_id} completed and projected")
    return World(
        alice_account=alice_account,
        bob_account=bob_account,
        teller_account=teller_account,
        bob_transfer=transfer_id,
        bob_command=withdrawal.json()["command_id"],
    )


def test_each_entry_tries_its_own_api() -> None:
    """An attempt sent to the other API would leave its route untested."""
    for (api, _, _), attempts in MATRIX.items():
        assert all(attempt.api == api for attempt in attempts)
    assert not set(MATRIX) & NO_OBJECT
