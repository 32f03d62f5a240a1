"""The command API's pure parts: a command's record -> HTTP status, body and headers."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from fastapi import Response

from bank_command_api.answers import answer, command_status, prefers_async
from bank_command_api.idempotency import fingerprint
from bank_command_api.ledger import CommandRecord
from bank_shared.http.problems import ProblemError

QUERY_API = "http://query.test/"
COMMAND_ID = uuid.UUID("0b9f8c2e-3f7d-4c55-9a8e-1d2c3b4a5f60")


def answer_for(
    decided: CommandRecord, *, async_requested: bool = False
) -> tuple[int, dict[str, object], dict[str, str]]:
    """The status, JSON body and headers of the answer to a POST whose command is `decided`."""
    response = Response()
    body = answer(decided, response, query_api_url=QUERY_API, async_requested=async_requested)
    headers = {k: v for k, v in response.headers.items() if k != "content-length"}
    return response.status_code, body.model_dump(mode="json", exclude_none=True), headers


def record(command_type: str, stream_id: str = "alice", **decision: object) -> CommandRecord:
    return CommandRecord(
        command_id=COMMAND_ID,
        command_type=command_type,
        stream_id=stream_id,
        **decision,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("command_type", "status"),
    [("OpenAccount", 201), ("DepositMoney", 200), ("WithdrawMoney", 200)],
)
def test_an_accepted_account_command_answers_its_version_and_two_decimal_balance(
    command_type: str, status: int
) -> None:
    decided = record(command_type, status="accepted", version=3, balance=Decimal("7.5"))
    assert answer_for(decided) == (
        status,
        {
            "account_id": "alice",
            "command_id": str(COMMAND_ID),
            "status": "accepted",
            "version": 3,
            "balance": "7.50",
        },
        {},
    )


def test_an_accepted_transfer_is_202_with_the_location_in_the_query_api() -> None:
    assert answer_for(record("StartTransfer", "t-1", status="accepted", version=1)) == (
        202,
        {"transfer_id": "t-1", "command_id": str(COMMAND_ID), "status": "accepted"},
        {"location": "http://query.test/transfers/t-1"},
    )


@pytest.mark.parametrize(
    ("command_type", "code", "status", "advice"),
    [
        ("DepositMoney", "account_not_found", 404, "POST /accounts"),
        ("WithdrawMoney", "insufficient_funds", 409, "http://query.test/accounts/alice"),
        ("OpenAccount", "account_already_exists", 409, "another account_id"),
        ("StartTransfer", "transfer_already_exists", 409, "another transfer_id"),
        ("DepositMoney", "invalid_amount", 422, "below the limit"),
        ("StartTransfer", "same_account", 422, "two different accounts"),
        ("DepositMoney", "something_new", 409, "something_new"),
    ],
)
def test_a_rejection_is_a_problem_with_its_code_and_what_to_do(
    command_type: str, code: str, status: int, advice: str
) -> None:
    decided = record(command_type, status="rejected", code=code, reason="because")
    with pytest.raises(ProblemError) as refused:
        answer_for(decided)
    problem = refused.value
    assert (problem.status, problem.code) == (status, code)
    assert advice in problem.message
    assert problem.extra["detail"] == "because"
    assert problem.extra["command_id"] == COMMAND_ID
    stream_field = "transfer_id" if command_type == "StartTransfer" else "account_id"
    assert problem.extra[stream_field] == "alice"


@pytest.mark.parametrize("async_requested", [False, True])
def test_pending_is_202_with_the_command_location(async_requested: bool) -> None:
    status, body, headers = answer_for(record("DepositMoney"), async_requested=async_requested)
    assert status == 202
    assert body == {"command_id": str(COMMAND_ID), "status": "pending", "account_id": "alice"}
    assert headers["location"] == f"/commands/{COMMAND_ID}"
    assert ("preference-applied" in headers) is async_requested


def test_a_decided_command_ignores_respond_async() -> None:
    decided = record("DepositMoney", status="accepted", version=2, balance=Decimal(1))
    status, _, headers = answer_for(decided, async_requested=True)
    assert status == 200
    assert "preference-applied" not in headers


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, False),
        ("", False),
        ("respond-async", True),
        ("Respond-Async", True),
        ("wait=5, respond-async", True),
        ("respond-async; foo=bar", True),
        ("return=minimal", False),
        ("respond-asynchronously", False),
    ],
)
def test_prefer_respond_async_is_recognised(header: str | None, expected: bool) -> None:
    assert prefers_async(header) is expected


def test_a_decided_record_answers_with_its_status_code_and_balance() -> None:
    decided = record(
        "WithdrawMoney",
        status="rejected",
        code="insufficient_funds",
        version=4,
        reason="no",
        balance=Decimal("0.10"),
    )
    status = command_status(decided).model_dump(mode="json")
    assert status["balance"] == "0.10"
    assert (status["status"], status["code"]) == ("rejected", "insufficient_funds")


def test_the_fingerprint_is_the_request_not_its_spelling() -> None:
    same = fingerprint("post", "/accounts/a/deposits", {"amount": "10.00", "x": None})
    assert same == fingerprint("POST", "/accounts/a/deposits", {"x": None, "amount": "10.00"})
    assert same != fingerprint("POST", "/accounts/a/withdrawals", {"amount": "10.00", "x": None})
    assert same != fingerprint("POST", "/accounts/a/deposits", {"amount": "10.01", "x": None})
