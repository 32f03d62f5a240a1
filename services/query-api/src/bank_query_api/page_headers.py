"""Security headers on the web UI's pages and files: what a browser may load, run or frame."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def page_headers(command_api_url: str) -> dict[str, str]:
    """The pages keep a bearer token in sessionStorage: an injected script could read it, so
    scripts and styles come only from our own files (no inline script, no eval), the pages
    talk only to this API and the command API, and no other site may frame them."""
    parts = urlsplit(command_api_url)
    command_api = f" {parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
    policy = [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        f"connect-src 'self'{command_api}",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
    return {
        "Content-Security-Policy": "; ".join(policy),
        # A file is run or styled only as what its Content-Type says.
        "X-Content-Type-Options": "nosniff",
        # Page addresses hold account and transfer ids: no other site learns them.
        "Referrer-Policy": "no-referrer",
    }


class PageHeaders:
    """Adds the headers to every answer under `prefix` (the UI's pages, config and static
    files). Not to the JSON routes, and not to /docs, whose Swagger UI runs inline script."""

    def __init__(self, app: ASGIApp, *, prefix: str, headers: dict[str, str]) -> None:
        self.app = app
        self.prefix = prefix
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
