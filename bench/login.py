"""The bench's clients log in as the bank's do: `POST /token`, then a bearer token on every
request, logged in again shortly before it expires (a run can outlast a token)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from bank_deploy.credentials import demo_passwords
from bank_shared.contracts.actors import TELLER
from bank_shared.settings import AuthSettings

# The answer of POST /token: access_token, token_type, expires_in.
LogIn = Callable[[], Awaitable[dict[str, Any]]]
# Logged in again this long before the token expires, so no request carries an expired one.
RENEW_BEFORE_EXPIRY = 60.0


class BearerLogin:
    """The `Authorization` header of a login, renewed by one request while the others wait."""

    def __init__(self, log_in: LogIn, clock: Callable[[], float] = time.monotonic) -> None:
        self._log_in = log_in
        self._clock = clock
        self._lock = asyncio.Lock()
        self._headers: dict[str, str] = {}
        self._renew_at = 0.0
        self.logins = 0

    async def headers(self) -> dict[str, str]:
        if self._clock() >= self._renew_at:
            async with self._lock:
                if self._clock() >= self._renew_at:
                    token = await self._log_in()
                    self._headers = {"Authorization": f"Bearer {token['access_token']}"}
                    lifetime = float(token["expires_in"])
                    self._renew_at = self._clock() + max(
                        lifetime - RENEW_BEFORE_EXPIRY, lifetime / 2
                    )
                    self.logins += 1
        return self._headers


def teller_login(http: aiohttp.ClientSession, api: str, auth: AuthSettings) -> BearerLogin:
    """The teller of the cluster's login material (any account, any amount, ids of its own)."""
    password = demo_passwords(auth)[TELLER]

    async def log_in() -> dict[str, Any]:
        form = {"username": TELLER, "password": password}
        async with http.post(f"{api}/token", data=form) as answer:
            if answer.status != 200:
                raise RuntimeError(
                    f"logging in as {TELLER} at {api}: {answer.status} {await answer.text()};"
                    f" the services read another login material than {auth.dir}?"
                )
            body: dict[str, Any] = await answer.json()
            return body

    return BearerLogin(log_in)
