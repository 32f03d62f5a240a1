"""What the OpenAPI document says about each answer: problems, their examples and headers."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI

from bank_query_api.problems import PROBLEM_JSON
from bank_query_api.schemas import Problem

Responses = dict[int | str, dict[str, Any]]

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
RETRY_AFTER = {
    "description": "Seconds to wait before asking again.",
    "schema": {"type": "integer", "example": 1},
}


def problem(description: str, *examples: tuple[str, str], retry: bool = False) -> dict[str, Any]:
    """A documented problem answer (`description` starts with its status) with one example per
    code."""
    status = int(description.split()[0])
    answer: dict[str, Any] = {
        "model": Problem,
        "description": description,
        "content": {
            "application/json": {
                "examples": {
                    code: {
                        "summary": code,
                        "value": {
                            "type": "about:blank",
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
    if retry:
        answer["headers"] = {"Retry-After": RETRY_AFTER}
    return answer


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
    """The problems every query may answer, plus the route's own (a later one wins)."""
    common = [
        problem("422 A query or path parameter is invalid", INVALID_PARAMETERS),
        problem(
            "503 The read database is unreachable (or not created yet)", UNAVAILABLE, retry=True
        ),
    ]
    return {int(p["description"].split()[0]): p for p in (*common, *problems)}


def install(app: FastAPI) -> None:
    """Problems are served as application/problem+json: say so in the document too."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()  # FastAPI's own, cached on the app; adjusted in place once
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    for answer in operation.get("responses", {}).values():
                        content = answer.get("content", {})
                        if content.get("application/json", {}).get("schema") == PROBLEM_REF:
                            content[PROBLEM_JSON] = content.pop("application/json")
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]
