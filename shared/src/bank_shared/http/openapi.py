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


class ProblemsApp(FastAPI):
    """A FastAPI app whose OpenAPI document shows its problems as application/problem+json:
    the answers documented with `problem_model`, and FastAPI's own 422 (which the problem
    handlers answer)."""

    problem_model: type[BaseModel] | None = None

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is not None or self.problem_model is None:
            return super().openapi()
        schema = super().openapi()  # FastAPI's own, cached on the app: adjusted once, in place
        problems = [
            {"$ref": f"{REF_PREFIX}{name}"}
            for name in (self.problem_model.__name__, "HTTPValidationError")
        ]
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                for answer in operation.get("responses", {}).values():
                    content = answer.get("content", {})
                    if content.get("application/json", {}).get("schema") in problems:
                        content[PROBLEM_JSON] = content.pop("application/json")
        return schema
