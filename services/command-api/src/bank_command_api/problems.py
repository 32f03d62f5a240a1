"""Errors as RFC 9457 problems: a snake_case `code`, and a `message` that says what to do."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from bank_command_api.schemas import ID_RULE, FieldProblem, Problem
from bank_shared.money import SEND_INSTEAD

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
AMOUNT_FIELDS = frozenset({"amount", "initial_balance"})
EXAMPLE_BODY = '{"amount": "10.50"}'


class ProblemError(Exception):
    """Raised by a route to answer with a problem."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def problem_response(
    status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    problem = Problem(
        title=HTTPStatus(status).phrase, status=status, code=code, message=message, **extra
    )
    body = problem.model_dump(mode="json", exclude_none=True)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def field_problem(error: dict[str, Any]) -> FieldProblem:
    loc = tuple(error.get("loc") or ("body",))
    location = str(loc[0]) if loc[0] in ("body", "path", "query", "header", "cookie") else "body"
    name = ".".join(str(part) for part in loc[1:]) or location
    kind = str(error.get("type", "value_error"))
    cause = (error.get("ctx") or {}).get("error")
    if kind == "value_error" and cause is not None:
        message = str(cause)
    elif kind == "missing":
        message = "is required" + (f"; {SEND_INSTEAD}" if name in AMOUNT_FIELDS else "")
        if name == "body":
            message = f"a JSON object is required, e.g. {EXAMPLE_BODY}"
    elif kind == "extra_forbidden":
        message = "is not a field of this request; remove it (or check its spelling)"
    elif kind == "string_pattern_mismatch" and location == "header":
        message = "use 1 to 255 visible ASCII characters without spaces, e.g. a UUID"
    elif kind == "string_pattern_mismatch":
        message = f"is not a valid id; use {ID_RULE}"
    elif name == "body" and kind in ("model_attributes_type", "dict_type"):
        message = f"must be a JSON object, e.g. {EXAMPLE_BODY}"
    else:
        message = str(error.get("msg", "is invalid"))
    return FieldProblem(field=name, location=location, message=message, type=kind)


def validation_problem(errors: Sequence[dict[str, Any]]) -> JSONResponse:
    """422 with every field's problem; 400 for a body that is not JSON; 415 for a body sent
    without a JSON content type."""
    for error in errors:
        if error.get("type") == "json_invalid":
            cause = (error.get("ctx") or {}).get("error", "malformed")
            return problem_response(
                400,
                "invalid_json",
                f"The body is not valid JSON ({cause}); send a JSON object such as"
                f" {EXAMPLE_BODY}, with amounts as strings.",
            )
        if tuple(error.get("loc", ())) == ("body",) and isinstance(error.get("input"), bytes):
            return problem_response(
                415,
                "unsupported_media_type",
                "The body must be JSON: send it with the header Content-Type: application/json.",
            )
    problems = [field_problem(error) for error in errors]
    summary = "; ".join(f"{p.field}: {p.message}" for p in problems)
    return problem_response(
        422,
        "validation_error",
        f"The request is invalid. {summary}. Correct it and send it again.",
        errors=problems,
    )


HTTP_CODES = {
    404: ("not_found", "There is no such endpoint; see /docs for the ones there are."),
    405: ("method_not_allowed", "This endpoint does not take that method; see /docs."),
    413: ("request_too_large", "The body is too large; commands are small JSON objects."),
}


def install(app: FastAPI) -> None:
    """Answer every error, the framework's too, as a problem."""

    async def on_problem(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ProblemError)
        return problem_response(error.status, error.code, error.message, **error.extra)

    async def on_invalid(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        return validation_problem(error.errors())

    async def on_http(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, HTTPException)
        code, message = HTTP_CODES.get(
            error.status_code, (f"http_{error.status_code}", str(error.detail))
        )
        return problem_response(error.status_code, code, message, headers=error.headers)

    async def on_unavailable(_: Request, error: Exception) -> JSONResponse:
        log.warning("command store unavailable: %s", error)
        return problem_response(
            503,
            "service_unavailable",
            "The command store cannot be reached right now; nothing was sent. Try again in a"
            " moment (with the same Idempotency-Key, if you use one).",
            headers={"Retry-After": "1"},
        )

    async def on_crash(_: Request, error: Exception) -> JSONResponse:
        log.error("unexpected error", exc_info=error)
        return problem_response(
            500,
            "internal_error",
            "Something went wrong on our side. Check GET /commands/{command_id} if you have a"
            " command id, or retry with the same Idempotency-Key.",
        )

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(HTTPException, on_http)
    for unavailable in (
        OSError,  # TimeoutError and ConnectionError included
        asyncpg.PostgresConnectionError,
        asyncpg.CannotConnectNowError,
        asyncpg.TooManyConnectionsError,
    ):
        app.add_exception_handler(unavailable, on_unavailable)
    app.add_exception_handler(Exception, on_crash)
