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

from bank_query_api.schemas import ID_RULE, TRANSFER_STATUSES, FieldProblem, Problem

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
RETRY_SOON = {"Retry-After": "1"}


class ProblemError(Exception):
    """Raised by a route to answer with a problem."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.extra = extra


def problem_response(
    status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    problem = Problem(
        title=HTTPStatus(status).phrase, status=status, code=code, message=message, **extra
    )
    body = problem.model_dump(mode="json", exclude_none=True)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def field_message(name: str, kind: str, error: Mapping[str, Any]) -> str:
    """What is wrong with one parameter, and what to send instead."""
    context = error.get("ctx") or {}
    if kind == "value_error" and context.get("error") is not None:
        return str(context["error"])
    match kind:
        case "missing":
            return "is required"
        case "int_parsing" | "int_type" | "int_from_float":
            return f"{error.get('input')!r} is not a whole number; send digits only, e.g. 10"
        case "greater_than_equal":
            return f"must be at least {context.get('ge')}"
        case "less_than_equal" if name == "limit":
            return f"must be at most {context.get('le')}; ask for fewer and page with offset"
        case "less_than_equal":
            return f"must be at most {context.get('le')}"
        case "literal_error" if name == "status":
            return (
                f"{error.get('input')!r} is not a transfer status; use one of"
                f" {', '.join(TRANSFER_STATUSES)}"
            )
        case "literal_error":
            return f"must be one of {context.get('expected')}"
        case "string_pattern_mismatch" | "string_too_long" | "string_too_short":
            return f"is not a valid id; use {ID_RULE}"
        case _:
            return str(error.get("msg", "is invalid"))


def field_problem(error: Mapping[str, Any]) -> FieldProblem:
    loc = tuple(error.get("loc") or ("query",))
    location = str(loc[0]) if loc[0] in ("body", "path", "query", "header", "cookie") else "query"
    name = ".".join(str(part) for part in loc[1:]) or location
    kind = str(error.get("type", "value_error"))
    return FieldProblem(
        field=name, location=location, message=field_message(name, kind, error), type=kind
    )


def validation_problem(errors: Sequence[Mapping[str, Any]]) -> JSONResponse:
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
    405: (
        "method_not_allowed",
        "This endpoint does not take that method; the query API only"
        " reads (GET). Send commands to the command API; see /docs.",
    ),
}


def install(app: FastAPI) -> None:
    """Answer every error, the framework's too, as a problem."""

    async def on_problem(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ProblemError)
        return problem_response(
            error.status, error.code, error.message, headers=error.headers, **error.extra
        )

    async def on_invalid(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        return validation_problem(error.errors())

    async def on_http(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, HTTPException)
        code, message = HTTP_CODES.get(
            error.status_code, (f"http_{error.status_code}", str(error.detail))
        )
        return problem_response(error.status_code, code, message, headers=error.headers)

    async def on_no_read_model(_: Request, error: Exception) -> JSONResponse:
        log.warning("read model missing: %s", error)
        return problem_response(
            503,
            "service_unavailable",
            "The read model is not there yet: the projector creates it when it starts. Start"
            " the projector, then try again.",
            headers=RETRY_SOON,
        )

    async def on_unavailable(_: Request, error: Exception) -> JSONResponse:
        log.warning("read database unavailable: %s", error)
        return problem_response(
            503,
            "service_unavailable",
            "The read database cannot be reached right now; try again in a moment.",
            headers=RETRY_SOON,
        )

    async def on_crash(_: Request, error: Exception) -> JSONResponse:
        log.error("unexpected error", exc_info=error)
        return problem_response(
            500, "internal_error", "Something went wrong on our side; try again in a moment."
        )

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(asyncpg.UndefinedTableError, on_no_read_model)
    for unavailable in (
        OSError,  # TimeoutError and ConnectionError included
        asyncpg.PostgresConnectionError,
        asyncpg.CannotConnectNowError,
        asyncpg.TooManyConnectionsError,
    ):
        app.add_exception_handler(unavailable, on_unavailable)
    app.add_exception_handler(Exception, on_crash)
