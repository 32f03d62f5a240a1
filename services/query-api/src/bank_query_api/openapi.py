"""What the OpenAPI document says about each answer: problems, their examples and headers."""

from __future__ import annotations

from typing import Any

from bank_query_api.schemas import Problem
from bank_shared.http.openapi import Responses, by_status, problem_answer

RETRY_AFTER = {
    "description": "Seconds to wait before asking again.",
    "schema": {"type": "integer", "example": 1},
}


WWW_AUTHENTICATE = {
    "description": '`Bearer`, with `error="invalid_token"` when a token was sent and refused.',
    "schema": {"type": "string", "example": 'Bearer error="invalid_token"'},
}


def problem(
    description: str,
    *examples: tuple[str, str],
    retry: bool = False,
    challenge: bool = False,
) -> dict[str, Any]:
    """A documented problem answer (`description` starts with its status) with one example per
    code; `retry`: with Retry-After, `challenge`: with WWW-Authenticate."""
    headers = {
        **({"Retry-After": RETRY_AFTER} if retry else {}),
        **({"WWW-Authenticate": WWW_AUTHENTICATE} if challenge else {}),
    }
    return problem_answer(Problem, description, examples, typed=True, headers=headers or None)


NOT_AUTHENTICATED = problem(
    "401 No bearer token, or one refused (expired, forged, or not this bank's)",
    (
        "not_authenticated",
        "This needs a bearer token: log in with POST /token on the command API (username and"
        " password, form-encoded) and send `Authorization: Bearer <access_token>`.",
    ),
    challenge=True,
)


INVALID_PARAMETERS = (
    "validation_error",
    "The request is invalid. limit: must be at most 500; ask for fewer and page with offset."
    " Correct it and send it again.",
)
UNAVAILABLE = (
    "service_unavailable",
    "The read database cannot be reached right now; try again in a moment.",
)


def responses(*problems: dict[str, Any]) -> Responses:
    """The problems every query of bank data may answer, plus the route's own (a later one
    wins)."""
    common = [
        NOT_AUTHENTICATED,
        problem("422 A query or path parameter is invalid", INVALID_PARAMETERS),
        problem(
            "503 The read database is unreachable (or not created yet)", UNAVAILABLE, retry=True
        ),
    ]
    return by_status(*common, *problems)
