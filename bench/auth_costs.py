"""What authentication costs per request, in one process (docs/performance.md, "Logins and
ownership").

Usage:
    uv run python -m bench.auth_costs [--verifications 5000] [--logins 10]

Timed with the services' own code, on material made as `make run` makes it: verifying one
bearer token, the work each API does for every request (PyJWT, Ed25519 signature and
claims); issuing one; and one login, the Argon2 password check of `POST /token`, which a client
pays once per token (15 minutes by default).

What the whole issue costs on the write path (tokens, senders in envelopes, ownership checks)
is measured as alternating pairs of `bench.steady_rate` runs of the code before it and after
it. A bank with the check switched off, for pairs of one code, would need a switch in the
services (there is none) or FastAPI's `dependency_overrides`, which rebuilds every dependency
of every request when any is overridden: it cost the command API more CPU per transfer than it
saved, so it measured FastAPI, not the token check.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bank_deploy.credentials import demo_passwords, ensure_credentials
from bank_shared.auth import material
from bank_shared.clock import utc_now
from bank_shared.contracts.actors import BANK_TELLER, TELLER
from bank_shared.settings import AuthSettings
from bench import report
from bench.openloop import percentile


def timed(call: Callable[[], object], times: int, unit: float) -> dict[str, float]:
    """p50, p99 and mean of `times` calls, in `unit` (1e6: microseconds, 1e3: milliseconds)."""
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * unit)
    ordered = sorted(samples)
    return {
        "calls": times,
        "p50": round(percentile(ordered, 0.50), 2),
        "p99": round(percentile(ordered, 0.99), 2),
        "mean": round(statistics.fmean(ordered), 2),
    }


def measure_in_process(verifications: int, logins: int) -> dict[str, Any]:
    """Material made as `make run` makes it, in a scratch directory; the services' own code."""
    with tempfile.TemporaryDirectory() as scratch:
        auth = AuthSettings(dir=Path(scratch) / "auth")
        ensure_credentials(auth)
        issuer, verifier = material.token_issuer(auth), material.token_verifier(auth)
        users, password = material.users(auth), demo_passwords(auth)[TELLER]
        token = issuer.issue(BANK_TELLER, utc_now())
        return {
            "verify_token_us": timed(lambda: verifier.verify(token), verifications, 1e6),
            "issue_token_us": timed(
                lambda: issuer.issue(BANK_TELLER, utc_now()), verifications, 1e6
            ),
            "log_in_ms": timed(lambda: users.authenticate(TELLER, password), logins, 1e3),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verifications", type=int, default=5000, help="timed token checks")
    parser.add_argument("--logins", type=int, default=10, help="timed password checks")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = parser.parse_args()

    result: dict[str, Any] = {"in_process": measure_in_process(args.verifications, args.logins)}
    if args.json:
        print(json.dumps(result))
        return
    print(f"machine: {platform.node()}, {os.cpu_count()} cores")
    print("\n".join(report.auth_lines(result)))


if __name__ == "__main__":
    main()
