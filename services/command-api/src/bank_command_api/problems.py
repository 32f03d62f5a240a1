"""Errors as RFC 9457 problems: a snake_case `code`, and a `message` that says what to do."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from bank_command_api.schemas import ID_RULE, FieldProblem, Problem
from bank_shared.http.problems import PROBLEM_JSON, InvalidField, Outage, ProblemError, Problems
from bank_shared.money import SEND_INSTEAD

__all__ = [
    "PROBLEMS",
    "PROBLEM_JSON",
    "ProblemError",
    "field_message",
    "install",
    "problem_response",
    "request_problem",
]

log = logging.getLogger(__name__)

AMOUNT_FIELDS = frozenset({"amount", "initial_balance"})
EXAMPLE_BODY = '{"amount": "10.50"}'


def field_message(field: InvalidField) -> str | None:
    """What is wrong with one field, header or path parameter, and what to send instead."""
    match field.kind:
        case "missing" if field.name == "body":
            return f"a JSON object is required, e.g. {EXAMPLE_BODY}"
        case "missing":
            return "is required" + (f"; {SEND_INSTEAD}" if field.name in AMOUNT_FIELDS else "")
        case "extra_forbidden":
            return "is not a field of this request; remove it (or check its spelling)"
        case "string_pattern_mismatch" if field.location == "header":
            return "use 1 to 255 visible ASCII characters without spaces, e.g. a UUID"
        case "string_pattern_mismatch":
            return f"is not a valid id; use {ID_RULE}"
        case "string_unicode":
            return "is not Unicode text (a lone surrogate escape?); send text as UTF-8"
        case "model_attributes_type" | "dict_type" if field.name == "body":
            return f"must be a JSON object, e.g. {EXAMPLE_BODY}"
        case _:
            return None


def request_problem(error: Mapping[str, Any]) -> tuple[int, str, str] | None:
    """400 for a body that is not JSON; 415 for a body sent without a JSON content type."""
    if error.get("type") == "json_invalid":
        cause = (error.get("ctx") or {}).get("error", "malformed")
        return (
            400,
            "invalid_json",
            f"The body is not valid JSON ({cause}); send a JSON object such as"
            f" {EXAMPLE_BODY}, with amounts as strings.",
        )
    if tuple(error.get("loc", ())) == ("body",) and isinstance(error.get("input"), bytes):
        return (
            415,
            "unsupported_media_type",
            "The body must be JSON: send it with the header Content-Type: application/json.",
        )
    return None


HTTP_CODES = {
    404: ("not_found", "There is no such endpoint; see /docs for the ones there are."),
    405: ("method_not_allowed", "This endpoint does not take that method; see /docs."),
    413: ("request_too_large", "The body is too large; commands are small JSON objects."),
}

PROBLEMS = Problems(
    model=Problem,
    field_model=FieldProblem,
    location="body",
    field_message=field_message,
    request_problem=request_problem,
    http_codes=HTTP_CODES,
    unavailable=Outage(
        "command store unavailable",
        "The command store cannot be reached right now; nothing was sent. Try again in a"
        " moment (with the same Idempotency-Key, if you use one).",
    ),
    crash_message="Something went wrong on our side. Check GET /commands/{command_id} if you"
    " have a command id, or retry with the same Idempotency-Key.",
    log=log,
)
problem_response = PROBLEMS.response
install = PROBLEMS.install
