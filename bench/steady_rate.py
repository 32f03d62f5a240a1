"""One offered rate held for a long window: latency and CPU per process, for profiling.

Usage (starts Kafka and PostgreSQL if they are not running, and leaves them running):
    uv run python -m bench.steady_rate --rate 25 --window 30 [--hops] [--idempotency-keys]

The sweep of `make bench` changes the rate every 13 s; attaching py-spy, or reading
per-thread context switches in /proc, needs one rate held longer. Same services, accounts and
open-loop schedule as `make bench` (`bench.systems.ours`, `bench.openloop`).
"""

from __future__ import annotations

import argparse
import asyncio

import uvloop

from bank_deploy.cluster import LocalInfra
from bench.hops import hop_report
from bench.openloop import LoadShape, Workload, run_step
from bench.suite import INITIAL_BALANCE
from bench.systems.ours import our_bank


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=25, help="offered transfers per second")
    parser.add_argument("--window", type=float, default=30, help="steady window, seconds")
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument(
        "--hops", action="store_true", help="also print each hop's delay (bench/hops.py)"
    )
    parser.add_argument(
        "--idempotency-keys",
        action="store_true",
        help="send every transfer's POST with an Idempotency-Key (make bench sends none)",
    )
    args = parser.parse_args()

    infra = LocalInfra()
    await asyncio.to_thread(infra.start)
    async with our_bank(
        infra.config.pg, args.accounts, INITIAL_BALANCE, idempotency_keys=args.idempotency_keys
    ) as (bank, ids):
        next_transfer = Workload(ids).pairs()
        print(f"processes: {bank.processes}", flush=True)
        step = await run_step(bank, args.rate, next_transfer, LoadShape(window=args.window))
        hops = await hop_report(bank, infra.config.kafka) if args.hops else ""
    ms = step.latency_ms
    cpu = ", ".join(f"{name} {value:.1f}" for name, value in step.cpu_ms_per_transfer.items())
    print(
        f"offered {args.rate:g}/s -> achieved {step.achieved_per_s:.1f}/s,"
        f" p50 {ms['p50']:.1f} ms, p99 {ms['p99']:.1f} ms; CPU ms per transfer: {cpu}"
    )
    if hops:
        print(hops)


if __name__ == "__main__":
    uvloop.run(main())
