"""The bench's clients log in once for all their requests, and again before the token expires."""

from __future__ import annotations

import asyncio
from typing import Any

from bench.login import RENEW_BEFORE_EXPIRY, BearerLogin


async def test_the_bench_logs_in_once_for_all_and_again_before_the_token_expires() -> None:
    clock = [1000.0]
    logins = 0

    async def log_in() -> dict[str, Any]:
        nonlocal logins
        logins += 1
        await asyncio.sleep(0)  # the others ask meanwhile
        return {"access_token": f"token-{logins}", "expires_in": 900}

    login = BearerLogin(log_in, clock=lambda: clock[0])
    first = await asyncio.gather(*(login.headers() for _ in range(10)))
    assert first == [{"Authorization": "Bearer token-1"}] * 10

    clock[0] += 900 - RENEW_BEFORE_EXPIRY - 1
    assert await login.headers() == {"Authorization": "Bearer token-1"}
    clock[0] += 1
    assert await login.headers() == {"Authorization": "Bearer token-2"}
    assert logins == 2
