"""What the OpenAPI document says about each answer: models, examples, headers, media types."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI

from bank_command_api.problems import PROBLEM_JSON
from bank_command_api.schemas import CommandPending, Problem
from bank_shared.money import SEND_INSTEAD

Responses = dict[int | str, dict[str, Any]]

LOCATION = {"description": "Where to follow the command or transfer.", "schema": {"type": "string"}}


def problem(description: str, *examples: tuple[str, str]) -> dict[str, Any]:
    """A documented problem answer with one example per code."""
    status = int(description.split()[0])
    return {
        "model": Problem,
        "description": description,
        "content": {
            "application/json": {
                "examples": {
                    code: {
                        "summary": code,
                        "value": {
                            "title": HTTPStatus(status).phrase,
                            "status": status,
                            "code": code,
                            "message": message,
                        },
                    }
                    for code, message in examples
                }
            }
        },
    }


def _status(description: str, *examples: tuple[str, str]) -> tuple[int, dict[str, Any]]:
    return int(description.split()[0]), problem(description, *examples)


BAD_AMOUNT = (
    "validation_error",
    f"The request is invalid. amount: 10.505 has more than two decimals; {SEND_INSTEAD}."
    " Correct it and send it again.",
)
KEY_REUSED = (
    "idempotency_key_reused",
    "This Idempotency-Key was used for a different request; use a new key for a new request.",
)

COMMON: Responses = dict(
    [
        _status(
            "400 The body is not JSON",
            ("invalid_json", "The body is not valid JSON; send a JSON object such as ..."),
        ),
        _status(
            "413 The body is too large",
            ("request_too_large", "The body is larger than 16384 bytes; ..."),
        ),
        _status(
            "415 The body was not sent as JSON",
            ("unsupported_media_type", "The body must be JSON: send Content-Type: ..."),
        ),
        _status(
            "503 The command store is unreachable; nothing was sent",
            ("service_unavailable", "Try again in a moment (with the same Idempotency-Key)."),
        ),
    ]
)

PENDING: Responses = {
    202: {
        "model": CommandPending,
        "description": "No decision within the timeout, or `Prefer: respond-async` was sent:"
        " the command is on its way; poll GET /commands/{command_id} (the Location).",
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
    return {**COMMON, **PENDING, **{int(p["description"].split()[0]): p for p in problems}}


def install(app: FastAPI) -> None:
    """Problems are served as application/problem+json: say so in the document too."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()  # FastAPI's own, cached on the app; adjusted in place once
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    for status, answer in operation.get("responses", {}).items():
                        content = answer.get("content", {})
                        if status[0] in "45" and "application/json" in content:
                            content[PROBLEM_JSON] = content.pop("application/json")
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]
