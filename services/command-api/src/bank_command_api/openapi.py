"""What the OpenAPI document says about each request and answer: headers, examples, problems."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header, Path

from bank_command_api.idempotency import KEY_PATTERN
from bank_command_api.schemas import CommandPending, Problem
from bank_shared.http.openapi import Responses, by_status, problem_answer
from bank_shared.ids import StreamName
from bank_shared.money import SEND_INSTEAD

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=KEY_PATTERN,
        description="Makes a retry safe: the same key with the same request gives the same"
        " answer and has no second effect; with a different request it is refused (422).",
        examples=["5f0c1d0e-7a2b-4c1e-9d55-2b4f7e3a9c10"],
    ),
]
PreferHeader = Annotated[
    str | None,
    Header(
        alias="Prefer",
        description="`respond-async`: answer 202 pending at once instead of waiting for the"
        " decision.",
        examples=["respond-async"],
    ),
]
AccountIdPath = Annotated[StreamName, Path(description="The account.", examples=["alice"])]

LOCATION = {"description": "Where to follow the command or transfer.", "schema": {"type": "string"}}


def problem(description: str, *examples: tuple[str, str]) -> dict[str, Any]:
    """A documented problem answer with one example per code."""
    return problem_answer(Problem, description, examples)


BAD_AMOUNT = (
    "validation_error",
    f"The request is invalid. amount: 10.505 has more than two decimals; {SEND_INSTEAD}."
    " Correct it and send it again.",
)
KEY_REUSED = (
    "idempotency_key_reused",
    "This Idempotency-Key was used for a different request; use a new key for a new request.",
)
KEY_IN_USE = (
    "idempotency_key_in_use",
    "A request with this Idempotency-Key is still being recorded; send it again in a moment,"
    " with the same key.",
)

UNAUTHENTICATED = problem(
    "401 No bearer token, or one that is expired or not valid",
    ("not_authenticated", "This needs a bearer token: log in with POST /token ..."),
)

COMMON: Responses = by_status(
    problem(
        "400 The body is not JSON",
        ("invalid_json", "The body is not valid JSON; send a JSON object such as ..."),
    ),
    problem(
        "413 The body is too large",
        ("request_too_large", "The body is larger than 16384 bytes; ..."),
    ),
    problem(
        "415 The body was not sent as JSON",
        ("unsupported_media_type", "The body must be JSON: send Content-Type: ..."),
    ),
    UNAUTHENTICATED,
    problem(
        "403 Only a teller may do this (choose an id, deposit cash, open for someone else)",
        ("teller_only", "Only a teller may do this (detail says what). ..."),
    ),
    problem(
        "429 Too many requests from this user or address",
        ("too_many_requests", "Too many requests (...). Wait 1 s, then send it again."),
    ),
    problem(
        "503 The command store is unreachable; nothing was sent",
        ("service_unavailable", "Try again in a moment (with the same Idempotency-Key)."),
    ),
)

PENDING: Responses = {
    202: {
        "model": CommandPending,
        "description": "No decision within the timeout, `Prefer: respond-async` was sent, or"
        " too many requests wait for decisions already (`max_waiting`): the command is on its"
        " way; poll GET /commands/{command_id} (the Location).",
        "headers": {
            "Location": LOCATION,
            "Preference-Applied": {
                "description": "`respond-async` when the request asked for it.",
                "schema": {"type": "string"},
            },
        },
    }
}


def responses(*problems: dict[str, Any]) -> Responses:
    """The answers every command POST may give (a 422 among them), plus the route's own."""
    return {**COMMON, **PENDING, **by_status(INVALID, *problems)}


OPEN_REFUSED = problem(
    "409 An account with this id exists already, or a request with this key is still being"
    " recorded",
    ("account_already_exists", "Account 'alice' exists already. Choose another."),
    KEY_IN_USE,
)
DEPOSIT_REFUSED = problem(
    "422 The request is invalid (nothing was sent), the key was used for another request,"
    " or the write side refused the amount",
    BAD_AMOUNT,
    KEY_REUSED,
    ("invalid_amount", f"The amount was refused; {SEND_INSTEAD}, more than zero."),
)
WITHDRAWAL_REFUSED = problem(
    "409 The account does not hold that much, or a request with this key is still being recorded",
    ("insufficient_funds", "Account 'alice' does not hold that much. ..."),
    KEY_IN_USE,
)
ACCOUNT_NOT_FOUND = problem(
    "404 The account does not exist, or it is not yours",
    ("account_not_found", "You have no account 'alice'. Check the account id ..."),
)
TRANSFER_REFUSED = problem(
    "409 A transfer with this id exists already, or a request with this key is still being"
    " recorded",
    ("transfer_already_exists", "Transfer 't-1' exists already. ..."),
    KEY_IN_USE,
)
COMMAND_NOT_FOUND = problem(
    "404 No command with this id was sent through this API",
    ("command_not_found", "No command ... was sent here; use the id of a POST."),
)
INVALID = problem(
    "422 The request is invalid (nothing was sent), or the key was used for another request",
    BAD_AMOUNT,
    KEY_REUSED,
)
TRANSFER_ACCEPTED = {
    "transfer_id": "t-1",
    "command_id": "0b9f8c2e-3f7d-4c55-9a8e-1d2c3b4a5f60",
    "status": "accepted",
}
# 202 is both answers to a transfer: started (accepted) and not decided yet (pending).
TRANSFER_ANSWERS: Responses = {
    202: {
        "description": "Started (status `accepted`, Location: the transfer in the query API), or"
        " not decided in time or `Prefer: respond-async` (status `pending`, Location: the"
        " transfer in the query API; Content-Location: /commands/{command_id}).",
        "headers": PENDING[202]["headers"],
        "content": {
            "application/json": {
                "examples": {
                    "accepted": {"value": TRANSFER_ACCEPTED},
                    "pending": {"value": {**TRANSFER_ACCEPTED, "status": "pending"}},
                }
            }
        },
    },
}
