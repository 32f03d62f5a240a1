"""The command API refuses bad requests before anything is sent, and says what to send.

The app runs without its lifespan: a request that fails validation never reaches the database
or Kafka, so none is needed here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from bank_command_api.app import create_app
from bank_command_api.schemas import AmountRequest, OpenAccountRequest, TransferRequest
from bank_command_api.settings import CommandApiSettings
from tests.logins import bearer

SEND = '"10.50"'


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(CommandApiSettings(max_amount=Decimal("500.00"), max_body_bytes=256))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://api", headers=bearer()
    ) as client:
        yield client


@pytest.mark.parametrize(
    ("amount", "says"),
    [
        (10.5, "not exact money"),
        (float("inf"), "not exact money"),
        ("1e3", "not an amount"),
        ("NaN", "not an amount"),
        ("10.505", "more than two decimals"),
        ("-1", "not more than zero"),
        (0, "not more than zero"),
        (True, "true/false"),
        (None, "a string or an integer"),
        (10**20, "too large"),
    ],
)
def test_each_bad_amount_says_why_and_what_to_send(amount: Any, says: str) -> None:
    with pytest.raises(ValidationError) as refused:
        AmountRequest.model_validate({"amount": amount})
    [error] = refused.value.errors()
    message = str(error["ctx"]["error"])
    assert says in message
    assert SEND in message


@pytest.mark.parametrize("amount", ["10.50", "10.5", "10", 10, "7.25", "0.01"])
def test_good_amounts_become_two_decimal_euros(amount: Any) -> None:
    parsed = AmountRequest.model_validate({"amount": amount}).amount
    assert parsed == Decimal(str(amount).strip())
    assert parsed.as_tuple().exponent == -2


def test_an_opening_balance_may_be_zero_and_defaults_to_it() -> None:
    assert OpenAccountRequest.model_validate({"owner": "A"}).initial_balance == Decimal("0.00")
    assert (
        OpenAccountRequest.model_validate({"owner": "A", "initial_balance": 0}).initial_balance == 0
    )
    with pytest.raises(ValidationError, match="negative"):
        OpenAccountRequest.model_validate({"owner": "A", "initial_balance": "-0.01"})


def test_the_ceiling_and_the_same_account_are_request_problems() -> None:
    transfer = TransferRequest.model_validate(
        {"source_account_id": "a", "target_account_id": "a", "amount": "500.01"}
    )
    problems = transfer.problems(Decimal("500.00"))
    assert [p["loc"] for p in problems] == [("body", "amount"), ("body", "target_account_id")]
    assert SEND in problems[0]["msg"]
    assert "above the maximum of 500.00" in problems[0]["msg"]
    assert transfer.problems(Decimal("1000.00"))[0]["loc"] == ("body", "target_account_id")


async def test_a_bad_amount_is_a_422_problem_with_a_field_list(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        "/accounts/alice/deposits",
        content=b'{"amount": 1e3}',
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["code"] == "validation_error"
    assert SEND in problem["message"]
    assert problem["errors"] == [
        {
            "field": "amount",
            "location": "body",
            "message": problem["errors"][0]["message"],
            "type": "value_error",
        }
    ]


async def test_the_configured_maximum_is_enforced(client: httpx.AsyncClient) -> None:
    answer = await client.post("/accounts/alice/withdrawals", json={"amount": "500.01"})
    assert answer.status_code == 422
    assert "above the maximum of 500.00" in answer.json()["message"]
    assert SEND in answer.json()["message"]


@pytest.mark.parametrize(
    ("path", "body", "field", "says"),
    [
        ("/accounts", {"initial_balance": "1"}, "owner", "is required"),
        ("/accounts", {"owner": "   "}, "owner", "at least 1 character"),
        ("/accounts", {"owner": "A", "account_id": "no spaces"}, "account_id", "not a valid id"),
        ("/accounts", {"owner": "A", "balance": "1"}, "balance", "not a field"),
        ("/accounts/alice/deposits", {}, "amount", SEND),
        ("/transfers", {"source_account_id": "a", "amount": "1"}, "target_account_id", "required"),
    ],
)
async def test_every_field_problem_is_named(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], field: str, says: str
) -> None:
    answer = await client.post(path, json=body)
    assert answer.status_code == 422, answer.text
    [problem] = answer.json()["errors"]
    assert problem["field"] == field
    assert says in problem["message"]


async def test_a_bad_account_id_in_the_path_is_422(client: httpx.AsyncClient) -> None:
    answer = await client.post("/accounts/-dash/deposits", json={"amount": "1"})
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["location"] == "path"


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "code"),
    [
        (b"{", "application/json", 400, "invalid_json"),
        (b'{"amount": "1"}', "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (b'"1"', "application/json", 422, "validation_error"),
        (b"x" * 257, "application/json", 413, "request_too_large"),
    ],
)
async def test_bodies_that_are_not_a_small_json_object(
    client: httpx.AsyncClient, raw: bytes, content_type: str, status: int, code: str
) -> None:
    answer = await client.post(
        "/accounts/alice/deposits", content=raw, headers={"content-type": content_type}
    )
    assert (answer.status_code, answer.json()["code"]) == (status, code)
    assert answer.headers["content-type"] == "application/problem+json"


async def test_a_chunked_body_over_the_limit_is_413_too(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 64

    answer = await client.post(
        "/accounts", content=chunks(), headers={"content-type": "application/json"}
    )
    assert (answer.status_code, answer.json()["code"]) == (413, "request_too_large")


async def test_unknown_paths_and_methods_are_problems_too(client: httpx.AsyncClient) -> None:
    missing = await client.get("/nothing-here")
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    wrong = await client.get("/transfers")
    assert (wrong.status_code, wrong.json()["code"]) == (405, "method_not_allowed")


async def test_the_document_lists_every_answer_with_problem_media_types(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    paths = document["paths"]
    expected = {
        ("/accounts", "post"): {"201", "202", "400", "409", "413", "415", "422", "503"},
        ("/accounts/{account_id}/deposits", "post"): {"200", "202", "404", "422"},
        ("/accounts/{account_id}/withdrawals", "post"): {"200", "202", "404", "409", "422"},
        ("/transfers", "post"): {"202", "409", "422"},
        ("/commands/{command_id}", "get"): {"200", "404"},
    }
    for (path, method), statuses in expected.items():
        answers = paths[path][method]["responses"]
        assert statuses <= set(answers), (path, sorted(answers))
        for status, answer in answers.items():
            if status[0] in "45":
                assert list(answer["content"]) == ["application/problem+json"], (path, status)
    headers = {p["name"] for p in paths["/accounts"]["post"]["parameters"]}
    assert headers == {"Idempotency-Key", "Prefer"}


async def test_cors_lets_the_web_ui_send_commands_and_read_refusals(
    client: httpx.AsyncClient,
) -> None:
    ui = {"Origin": "http://127.0.0.1:8002"}
    preflight = await client.options(
        "/transfers",
        headers={
            **ui,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,idempotency-key",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ui["Origin"]
    refused = await client.post("/accounts/alice/deposits", json={"amount": "1.234"}, headers=ui)
    assert refused.status_code == 422
    assert refused.headers["access-control-allow-origin"] == ui["Origin"]
    too_large = await client.post("/accounts", content=b"x" * 1000, headers=ui)
    assert too_large.headers["access-control-allow-origin"] == ui["Origin"]


async def test_cors_refuses_origins_not_configured(client: httpx.AsyncClient) -> None:
    other = await client.post(
        "/accounts/alice/deposits", json={"amount": "1.234"}, headers={"Origin": "http://evil.test"}
    )
    assert "access-control-allow-origin" not in other.headers
    settings = CommandApiSettings(cors_origins=" http://ui.test, ,http://localhost:5173 ")
    assert settings.allowed_origins == ["http://ui.test", "http://localhost:5173"]
