"""The query API's pure parts: settings, filters, JSON shapes, problems, and what the HTTP layer
refuses before it reads anything (the app runs without its lifespan: no database)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from bank_query_api.app import create_app
from bank_query_api.queries import TransferFilter
from bank_query_api.schemas import Account, AccountActivity, Transfer
from bank_query_api.settings import QueryApiSettings
from tests.logins import bearer

PROBLEM = "application/problem+json"
OPENED = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)


# --- settings -----------------------------------------------------------------------------------


def test_settings_come_from_bank_query_api_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BANK_QUERY_API_HTTP_PORT", "9102")
    monkeypatch.setenv("BANK_QUERY_API_MIN_VERSION_WAIT", "2.5")
    monkeypatch.setenv("BANK_QUERY_API_CORS_ORIGINS", " http://ui.test ,http://localhost:5173,")
    monkeypatch.setenv("BANK_PG_READ_DB", "reads")
    settings = QueryApiSettings()
    assert (settings.http_host, settings.http_port, settings.min_version_wait) == (
        "127.0.0.1",
        9102,
        2.5,
    )
    assert settings.allowed_origins == ["http://ui.test", "http://localhost:5173"]
    assert settings.dsn.endswith("/reads")


def test_defaults() -> None:
    settings = QueryApiSettings()
    assert (settings.http_port, settings.default_limit, settings.max_limit) == (8002, 50, 500)
    assert (settings.min_version_wait, settings.min_version_recheck) == (5.0, 0.1)
    assert settings.allowed_origins == []


def test_a_default_limit_above_the_maximum_is_refused() -> None:
    with pytest.raises(ValidationError, match="default_limit"):
        QueryApiSettings(default_limit=600, max_limit=500)


# --- SQL filters ------------------------------------------------------------------------------


def test_transfer_filters_become_placeholders_never_values() -> None:
    assert TransferFilter().where() == ("", [])
    assert TransferFilter(account_id="alice").where() == (
        "WHERE (source_account_id = $1 OR target_account_id = $1)",
        ["alice"],
    )
    assert TransferFilter(account_id="alice", status="failed").where() == (
        "WHERE (source_account_id = $1 OR target_account_id = $1) AND status = $2",
        ["alice", "failed"],
    )
    assert TransferFilter(status="started").where() == ("WHERE status = $1", ["started"])


# --- JSON shapes ------------------------------------------------------------------------------


def test_money_is_a_two_decimal_string_and_times_are_utc_with_z() -> None:
    berlin = timezone(timedelta(hours=1))
    account = Account(
        account_id="alice",
        owner="Alice",
        balance=Decimal("0.5"),
        version=2,
        opened_at=OPENED,
        updated_at=datetime(2026, 1, 15, 11, 0, 0, 250000, tzinfo=berlin),
    )
    assert account.model_dump(mode="json") == {
        "account_id": "alice",
        "owner": "Alice",
        "balance": "0.50",
        "version": 2,
        "opened_at": "2026-01-15T09:30:00Z",
        "updated_at": "2026-01-15T10:00:00.250000Z",
    }
    activity = AccountActivity(
        version=1,
        type="AccountOpened",
        amount=Decimal("100"),
        balance_after=Decimal("100.00"),
        transfer_id=None,
        occurred_at=OPENED,
    )
    dumped = activity.model_dump(mode="json")
    assert (dumped["amount"], dumped["balance_after"]) == ("100.00", "100.00")


def test_a_transfer_in_progress_has_no_finish_and_no_reason() -> None:
    transfer = Transfer(
        transfer_id="t-1",
        source_account_id="alice",
        target_account_id="bob",
        amount=Decimal("1234567.8"),
        status="debited",
        reason=None,
        refunded=False,
        started_at=OPENED,
        finished_at=None,
    )
    dumped = transfer.model_dump(mode="json")
    assert (dumped["amount"], dumped["finished_at"], dumped["reason"]) == (
        "1234567.80",
        None,
        None,
    )


# --- HTTP, before any read ----------------------------------------------------------------------


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(QueryApiSettings(max_limit=100, cors_origins="http://ui.test"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://query-api", headers=bearer()
    ) as client:
        yield client


def problem_of(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM
    body: dict[str, Any] = answer.json()
    assert (body["status"], body["code"]) == (status, code)
    return body


@pytest.mark.parametrize(
    ("path", "field", "says"),
    [
        ("/accounts?limit=0", "limit", "at least 1"),
        ("/accounts?limit=101", "limit", "at most 100; ask for fewer and page with offset"),
        ("/accounts?limit=1.5", "limit", "not a whole number"),
        ("/accounts?offset=-1", "offset", "at least 0"),
        ("/transfers?status=done", "status", "use one of started, debited, completed, failed"),
        ("/transfers?account_id=no%20spaces", "account_id", "is not a valid id"),
        ("/accounts/alice?min_version=0", "min_version", "at least 1"),
        ("/accounts/alice?min_version=soon", "min_version", "not a whole number"),
        ("/accounts/-alice", "account_id", "is not a valid id"),
        ("/transfers/" + "t" * 65, "transfer_id", "is not a valid id"),
    ],
)
async def test_invalid_parameters_are_422_problems_that_say_what_to_send(
    client: httpx.AsyncClient, path: str, field: str, says: str
) -> None:
    body = problem_of(await client.get(path), 422, "validation_error")
    [error] = body["errors"]
    assert error["field"] == field
    assert says in error["message"]
    assert says in body["message"]


async def test_unknown_routes_and_methods_are_problems(client: httpx.AsyncClient) -> None:
    problem_of(await client.get("/nowhere"), 404, "not_found")
    body = problem_of(await client.post("/accounts", json={}), 405, "method_not_allowed")
    assert "command API" in body["message"]


async def test_before_the_lifespan_ran_it_is_alive_but_not_ready(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    ready = await client.get("/ready")
    assert (ready.status_code, ready.json()) == (503, {"status": "starting", "checks": {}})
    answer = await client.get("/accounts")
    problem_of(answer, 503, "service_unavailable")
    assert answer.headers["retry-after"] == "1"


async def test_cors_allows_the_configured_origins_only(client: httpx.AsyncClient) -> None:
    allowed = await client.get("/health", headers={"Origin": "http://ui.test"})
    assert allowed.headers["access-control-allow-origin"] == "http://ui.test"
    other = await client.get("/health", headers={"Origin": "http://evil.test"})
    assert "access-control-allow-origin" not in other.headers
    preflight = await client.options(
        "/accounts",
        headers={"Origin": "http://ui.test", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 200


async def test_the_openapi_document_describes_every_field_and_error(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    for model in (
        "Account",
        "AccountPage",
        "AccountActivity",
        "AccountHistory",
        "Transfer",
        "TransferPage",
        "Problem",
        "FieldProblem",
        "Readiness",
        "Health",
    ):
        assert schemas[model].get("description"), model
        for name, prop in schemas[model]["properties"].items():
            assert prop.get("description"), f"{model}.{name}"
    for model in ("Account", "AccountActivity", "Transfer"):
        for name, prop in schemas[model]["properties"].items():
            assert prop.get("examples") or name.endswith("_at"), f"{model}.{name}"

    paths = document["paths"]
    assert set(paths) >= {
        "/accounts",
        "/accounts/{account_id}",
        "/accounts/{account_id}/events",
        "/transfers",
        "/transfers/{transfer_id}",
        "/health",
        "/ready",
    }
    account = paths["/accounts/{account_id}"]["get"]["responses"]
    waited = account["503"]
    assert "Retry-After" in waited["headers"]
    assert set(waited["content"]["application/problem+json"]["examples"]) == {
        "not_yet_projected",
        "service_unavailable",
        "too_many_waiters",
    }
    assert "account_not_found" in account["404"]["content"][PROBLEM]["examples"]
    transfer = paths["/transfers/{transfer_id}"]["get"]["responses"]
    assert "transfer_not_found" in transfer["404"]["content"][PROBLEM]["examples"]
    for path in paths.values():
        for operation in path.values():
            assert operation.get("summary")
            for status, answer in operation["responses"].items():
                assert answer["description"]
                if status[0] in "45":
                    [media_type] = answer["content"]
                    problem = answer["content"][media_type]["schema"] == {
                        "$ref": "#/components/schemas/Problem"
                    }
                    assert media_type == (PROBLEM if problem else "application/json")
    ready = paths["/ready"]["get"]["responses"]["503"]["content"]["application/json"]
    assert ready["schema"] == {"$ref": "#/components/schemas/Readiness"}
