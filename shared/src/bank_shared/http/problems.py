"""Errors as RFC 9457 problems: the problem+json answer, field messages and exception handlers."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal, Protocol, get_args

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

PROBLEM_JSON = "application/problem+json"
RETRY_SOON = {"Retry-After": "1"}

FieldLocation = Literal["body", "path", "query", "header", "cookie"]
LOCATIONS: tuple[str, ...] = get_args(FieldLocation)

# The database cannot be reached: 503, try again.
UNAVAILABLE: tuple[type[Exception], ...] = (
    OSError,  # TimeoutError and ConnectionError included
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)


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


class FieldProblemLike(Protocol):
    """What the summary of a 422 reads from a service's FieldProblem."""

    @property
    def field(self) -> str: ...

    @property
    def message(self) -> str: ...


@dataclass(frozen=True)
class InvalidField:
    """One validation error of a request, as a service words its message."""

    name: str
    location: str
    kind: str
    error: Mapping[str, Any]

    @property
    def context(self) -> Mapping[str, Any]:
        context: Mapping[str, Any] = self.error.get("ctx") or {}
        return context


@dataclass(frozen=True)
class Outage:
    """A 503 for a dependency that is missing: what the log says, and what the client can do."""

    log: str
    message: str


@dataclass(frozen=True)
class Problems:
    """One service's problems: its Problem and FieldProblem schemas and its own wording."""

    model: Callable[..., BaseModel]
    field_model: Callable[..., FieldProblemLike]
    # Where a parameter without a known location was sent.
    location: FieldLocation
    # What is wrong with one field and what to send instead; None: the validator's own words.
    field_message: Callable[[InvalidField], str | None]
    # The framework's HTTP errors, by status: (code, message).
    http_codes: Mapping[int, tuple[str, str]]
    # The answer to the database being unreachable (any of UNAVAILABLE), and to a crash.
    unavailable: Outage
    crash_message: str
    log: logging.Logger
    # Other exceptions that mean a dependency is missing.
    outages: Mapping[type[Exception], Outage] | None = None
    # An error about the whole request rather than one field, as (status, code, message).
    request_problem: Callable[[Mapping[str, Any]], tuple[int, str, str] | None] | None = None

    def response(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> JSONResponse:
        problem = self.model(
            title=HTTPStatus(status).phrase, status=status, code=code, message=message, **extra
        )
        body = problem.model_dump(mode="json", exclude_none=True)
        return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)

    def field_problem(self, error: Mapping[str, Any]) -> FieldProblemLike:
        loc = tuple(error.get("loc") or (self.location,))
        location = str(loc[0]) if loc[0] in LOCATIONS else self.location
        name = ".".join(str(part) for part in loc[1:]) or location
        field = InvalidField(name, location, str(error.get("type", "value_error")), error)
        cause = field.context.get("error")
        if field.kind == "value_error" and cause is not None:
            message = str(cause)
        else:
            worded = self.field_message(field)
            message = str(error.get("msg", "is invalid")) if worded is None else worded
        return self.field_model(field=name, location=location, message=message, type=field.kind)

    def validation(self, errors: Sequence[Mapping[str, Any]]) -> JSONResponse:
        """422 with every field's problem, unless an error is about the whole request."""
        if self.request_problem is not None:
            for error in errors:
                whole = self.request_problem(error)
                if whole is not None:
                    return self.response(*whole)
        problems = [self.field_problem(error) for error in errors]
        summary = "; ".join(f"{p.field}: {p.message}" for p in problems)
        return self.response(
            422,
            "validation_error",
            f"The request is invalid. {summary}. Correct it and send it again.",
            errors=problems,
        )

    def install(self, app: FastAPI) -> None:
        """Answer every error, the framework's too, as a problem."""

        async def on_problem(_: Request, error: Exception) -> JSONResponse:
            assert isinstance(error, ProblemError)
            return self.response(
                error.status, error.code, error.message, headers=error.headers, **error.extra
            )

        async def on_invalid(_: Request, error: Exception) -> JSONResponse:
            assert isinstance(error, RequestValidationError)
            return self.validation(error.errors())

        async def on_http(_: Request, error: Exception) -> JSONResponse:
            assert isinstance(error, HTTPException)
            code, message = self.http_codes.get(
                error.status_code, (f"http_{error.status_code}", str(error.detail))
            )
            return self.response(error.status_code, code, message, headers=error.headers)

        def on_outage(outage: Outage) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
            async def on_missing(_: Request, error: Exception) -> JSONResponse:
                self.log.warning("%s: %s", outage.log, error)
                return self.response(503, "service_unavailable", outage.message, headers=RETRY_SOON)

            return on_missing

        async def on_crash(_: Request, error: Exception) -> JSONResponse:
            self.log.error("unexpected error", exc_info=error)
            return self.response(500, "internal_error", self.crash_message)

        app.add_exception_handler(ProblemError, on_problem)
        app.add_exception_handler(RequestValidationError, on_invalid)
        app.add_exception_handler(HTTPException, on_http)
        outages = {**dict.fromkeys(UNAVAILABLE, self.unavailable), **(self.outages or {})}
        for kind, outage in outages.items():
            app.add_exception_handler(kind, on_outage(outage))
        app.add_exception_handler(Exception, on_crash)
