"""OpenAPI for problem answers: documented examples, and the problem+json media type."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.constants import REF_PREFIX
from pydantic import BaseModel

from bank_shared.http.problems import PROBLEM_JSON

Responses = dict[int | str, dict[str, Any]]


def status_of(description: str) -> int:
    """The status a documented answer's description starts with."""
    return int(description.split()[0])


def by_status(*answers: dict[str, Any]) -> Responses:
    """Documented answers keyed by their status (a later one wins)."""
    return {status_of(answer["description"]): answer for answer in answers}


def problem_answer(
    model: type[BaseModel],
    description: str,
    examples: Iterable[tuple[str, str]],
    *,
    typed: bool = False,
    headers: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A documented problem answer (`description` starts with its status) with one example per
    code; `typed` examples show the problem's `type` too."""
    status = status_of(description)
    answer: dict[str, Any] = {
        "model": model,
        "description": description,
        "content": {
            "application/json": {
                "examples": {
                    code: {
                        "summary": code,
                        "value": {
                            **({"type": "about:blank"} if typed else {}),
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
    if headers is not None:
        answer["headers"] = dict(headers)
    return answer


def problem_media_type(app: FastAPI, problem: type[BaseModel]) -> None:
    """Answers documented with the `problem` model, or with FastAPI's own 422 (which the problem
    handlers answer), are served as application/problem+json: say so in the document too."""
    generate = app.openapi
    schemas = [
        {"$ref": f"{REF_PREFIX}{name}"} for name in (problem.__name__, "HTTPValidationError")
    ]

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()  # FastAPI's own, cached on the app; adjusted in place once
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    for answer in operation.get("responses", {}).values():
                        content = answer.get("content", {})
                        if content.get("application/json", {}).get("schema") in schemas:
                            content[PROBLEM_JSON] = content.pop("application/json")
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]
