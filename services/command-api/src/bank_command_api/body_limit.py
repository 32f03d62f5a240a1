"""Refuse request bodies above a size before anything reads them: 413, as a problem.

Not FastAPI's own `max_body_size` (FastAPI 0.165): it answers a body whose declared
Content-Length is too large with a plain-text 413 ("Content Too Large"), whatever the
exception handlers say, and every error here is a problem+json with a `code`."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bank_command_api.problems import problem_response


class BodySizeLimit:
    """Reads the (small) body up front, so both a declared Content-Length and a chunked
    body that grows too large are refused before the route runs."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # the client went away; let the app see it
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413,
            "request_too_large",
            f"The body is larger than {self.max_bytes} bytes; commands are small JSON objects"
            ' such as {"amount": "10.50"}.',
        )
        await response(scope, receive, send)
