"""Rate limits (OWASP API4): how often one subject, or one client address, may call a route.

Counted by the `limits` library in this process's memory: each instance of a service counts
its own requests, so N instances let a client through up to N times as often (docs/security.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from bank_shared.http.problems import ProblemError


def rules(text: str) -> list[RateLimitItem]:
    """`"20/second;300/minute"` as rules; empty text: no limit. ValueError if unreadable."""
    return parse_many(text) if text.strip() else []


class RateLimits:
    def __init__(self) -> None:
        # A moving window: at most N in any stretch of the period, with no burst of twice N
        # across the edge of two fixed windows (and no estimate, as the sliding counter's).
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def check(self, limits: Sequence[RateLimitItem], scope: str, key: str) -> None:
        """Count one request of `key` (a subject, an address) in `scope`; 429 with
        Retry-After once it is over any of `limits`."""
        for limit in limits:
            if not self._limiter.hit(limit, scope, key):
                stats = self._limiter.get_window_stats(limit, scope, key)
                wait = max(1, math.ceil(stats.reset_time - time.time()))
                raise ProblemError(
                    429,
                    "too_many_requests",
                    f"Too many requests ({scope}: at most {limit}). Wait {wait} s, then send"
                    " it again.",
                    headers={"Retry-After": str(wait)},
                )
