"""Account commands through the command API: deposits/s and latency with the wait-for-outcome
answer (each POST returns once the accounts service decided and the outcome came back)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any

from bench.openloop import latency_summary

Deposit = Callable[[str, Decimal], Awaitable[None]]


async def deposit_load(
    deposit: Deposit, accounts: Sequence[str], clients: int, seconds: float
) -> dict[str, Any]:
    """`clients` callers, each depositing again as soon as its answer came, for `seconds`."""
    # perf_counter, not loop.time(): uvloop's clock ticks in whole milliseconds.
    now = time.perf_counter
    deadline = now() + seconds
    latencies: list[float] = []
    errors = 0

    async def client(seed: int) -> None:
        nonlocal errors
        rng = random.Random(seed)
        while now() < deadline:
            sent = now()
            try:
                await deposit(rng.choice(accounts), Decimal("1.00"))
            except Exception:  # counted and reported; the load goes on
                errors += 1
                continue
            latencies.append((now() - sent) * 1000)

    started = now()
    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = now() - started
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "deposits": len(latencies),
        "errors": errors,
        "deposits_per_s": round(len(latencies) / elapsed, 1),
        "latency_ms": {k: round(v, 1) for k, v in latency_summary(latencies).items()},
    }
