"""What the OpenAPI document says about each answer: models, examples, headers, media types."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from bank_command_api.schemas import CommandPending, Problem
from bank_shared.http.openapi import Responses, by_status, problem_answer, problem_media_type
from bank_shared.money import SEND_INSTEAD

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
    """The answers every command POST may give, plus the route's own problems."""
    return {**COMMON, **PENDING, **by_status(*problems)}


def install(app: FastAPI) -> None:
    """Problems are served as application/problem+json: say so in the document too."""
    problem_media_type(app, Problem)
