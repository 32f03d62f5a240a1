"""Errors as RFC 9457 problems: a snake_case `code`, and a `message` that says what to do."""

from __future__ import annotations

import logging

import asyncpg

from bank_query_api.schemas import ID_RULE, TRANSFER_STATUSES, FieldProblem, Problem
from bank_shared.http.problems import (
    PROBLEM_JSON,
    RETRY_SOON,
    InvalidField,
    Outage,
    ProblemError,
    Problems,
)

__all__ = [
    "PROBLEMS",
    "PROBLEM_JSON",
    "RETRY_SOON",
    "ProblemError",
    "field_message",
    "install",
    "problem_response",
]

log = logging.getLogger(__name__)


def field_message(field: InvalidField) -> str | None:
    """What is wrong with one parameter, and what to send instead."""
    context, value = field.context, field.error.get("input")
    match field.kind:
        case "missing":
            return "is required"
        case "int_parsing" | "int_type" | "int_from_float":
            return f"{value!r} is not a whole number; send digits only, e.g. 10"
        case "greater_than_equal":
            return f"must be at least {context.get('ge')}"
        case "less_than_equal" if field.name == "limit":
            return f"must be at most {context.get('le')}; ask for fewer and page with offset"
        case "less_than_equal":
            return f"must be at most {context.get('le')}"
        case "literal_error" if field.name == "status":
            return f"{value!r} is not a transfer status; use one of {', '.join(TRANSFER_STATUSES)}"
        case "literal_error":
            return f"must be one of {context.get('expected')}"
        case "string_pattern_mismatch" | "string_too_long" | "string_too_short":
            return f"is not a valid id; use {ID_RULE}"
        case _:
            return None


HTTP_CODES = {
    404: ("not_found", "There is no such endpoint; see /docs for the ones there are."),
    405: (
        "method_not_allowed",
        "This endpoint does not take that method; the query API only"
        " reads (GET). Send commands to the command API; see /docs.",
    ),
}

PROBLEMS = Problems(
    model=Problem,
    field_model=FieldProblem,
    location="query",
    field_message=field_message,
    http_codes=HTTP_CODES,
    unavailable=Outage(
        "read database unavailable",
        "The read database cannot be reached right now; try again in a moment.",
    ),
    outages={
        asyncpg.UndefinedTableError: Outage(
            "read model missing",
            "The read model is not there yet: the projector creates it when it starts. Start"
            " the projector, then try again.",
        )
    },
    crash_message="Something went wrong on our side; try again in a moment.",
    log=log,
)
problem_response = PROBLEMS.response
install = PROBLEMS.install
