"""`make bench`: our bank and two peers under the same open-loop transfer load, side by side.

    uv run python -m bench.suite            # the full run (about fifteen minutes on 2 cores)
    uv run python -m bench.suite --quick    # a tiny run that only checks the tool works

It starts the local Kafka and PostgreSQL (`bank-infra start --infra-only`; left running if they
already were), then on scratch databases of that one PostgreSQL:
1. sweeps the offered transfer rate for each system until it saturates (see bench/openloop.py):
   ours (POST /transfers -> `completed` in the read model), plain SQL with asyncpg, and the
   `eventsourcing` library; then runs ours once more at half of its maximum;
2. measures deposits through the command API (wait-for-outcome answers);
3. runs the empty seven-step pipeline (bench/pipeline_floor.py) at the rate of ours' half-max
   step: what the steps alone cost there;
4. times a full read-model rebuild of a history of at least 100,000 events;
5. times loading an account of 100,000 events with and without a snapshot, and runs one
   transfer rate with snapshots on and off, alternating (bench/snapshot_costs.py);
6. times a token check, a token issued and a login in one process (bench/auth_costs.py).
Its clients log in as the teller and send a bearer token with every request.
It prints a table, writes `<out>/bench-<time>.json` and `.png`, and ends with `results: <json>`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib.metadata
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import uvloop

from bank_deploy.cluster import LocalInfra
from bank_shared.settings import PostgresSettings
from bench import report
from bench.cpu import wait_until_quiet
from bench.deposits import deposit_load
from bench.openloop import (
    LoadShape,
    Step,
    TransferSystem,
    Workload,
    max_sustained,
    run_step,
    sweep,
)
from bench.systems.eventsourcing_peer import eventsourcing_bank
from bench.systems.ours import our_bank
from bench.systems.plain_sql import plain_sql_bank

# Finer steps where ours saturates on the development machine (docs/performance.md).
FULL_RATES = (
    *(25, 50, 100, 150, 200, 250, 300, 350, 400, 450, 500, 550, 600),
    *(700, 800, 1000, 1200, 1600, 2000, 2400),
)
QUICK_RATES = (5, 10)
# Accounts of every system start with this much: no transfer of the run is ever refused.
INITIAL_BALANCE = Decimal("1000000.00")
# Connections of the peers' pools (and threads of the eventsourcing peer): what a web server
# in front of them would hold on this 2-core machine.
PEER_CONNECTIONS = 8


Peer = Callable[
    [PostgresSettings, int, Decimal, int],
    contextlib.AbstractAsyncContextManager[tuple[TransferSystem, Sequence[str]]],
]
PEERS: dict[str, Peer] = {"plain_sql": plain_sql_bank, "eventsourcing": eventsourcing_bank}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run (for CI)")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--accounts", type=int, help="accounts per system (default 1000)")
    parser.add_argument("--rates", help="offered transfers/s, comma-separated")
    parser.add_argument(
        "--systems", default="plain_sql,eventsourcing,ours", help="which systems, in this order"
    )
    parser.add_argument(
        "--no-extras", action="store_true", help="skip deposits, the empty pipeline and replay"
    )
    parser.add_argument("--window", type=float, help="steady window of each step, seconds")
    return parser.parse_args(argv)


def say(text: str) -> None:
    print(text, flush=True)


def progress(name: str, step: Step) -> None:
    ms = step.latency_ms
    say(
        f"  {name}: offered {step.offered_per_s:,.0f}/s -> achieved {step.achieved_per_s:,.1f}/s,"
        f" p50 {report.fmt(ms['p50'])} ms, p99 {report.fmt(ms['p99'])} ms"
        f"{'' if step.sustained else '  (not sustained)'}"
    )
    for sample in step.error_samples:
        say(f"    error: {sample}")


async def describe(pg: PostgresSettings, infra: LocalInfra) -> dict[str, Any]:
    cpuinfo = await asyncio.to_thread(Path("/proc/cpuinfo").read_text)
    conn = await asyncpg.connect(pg.dsn("postgres"))
    try:
        settings = {
            name: await conn.fetchval(f"SHOW {name}")
            for name in ("server_version", "fsync", "synchronous_commit", "shared_buffers")
        }
    finally:
        await conn.close()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in cpuinfo.splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    packages = ("aiokafka", "faststream", "asyncpg", "eventsourcing", "psycopg", "uvicorn")
    return {
        "machine": {
            "host": platform.node(),
            "cores": os.cpu_count(),
            "memory_gib": round(memory / 2**30, 1),
            "cpu": cpu,
            "os": platform.platform(),
        },
        "versions": {
            "python": platform.python_version(),
            "postgresql": settings.pop("server_version"),
            "kafka": infra.config.kafka_version,
            **{p: importlib.metadata.version(p) for p in packages},
        },
        "postgresql_settings": settings,
    }


async def bench_transfers(
    args: argparse.Namespace, pg: PostgresSettings, shape: LoadShape, rates: Sequence[float]
) -> dict[str, Any]:
    accounts = args.accounts or (20 if args.quick else 1000)
    systems: dict[str, Any] = {}
    for name in args.systems.split(","):
        say(f"{name}: opening {accounts} accounts")
        if name in PEERS:
            async with PEERS[name](pg, accounts, INITIAL_BALANCE, PEER_CONNECTIONS) as (bank, ids):
                systems[name] = summary(await sweep(bank, rates, Workload(ids), shape, progress))
        elif name == "ours":
            async with our_bank(pg, accounts, INITIAL_BALANCE) as (ours, ids):
                workload = Workload(ids)
                steps = await sweep(ours, rates, workload, shape, progress)
                systems[name] = summary(steps)
                # Which processes ran (BANK_INSTANCES can start more than one of a service).
                systems[name]["processes"] = sorted(ours.processes)
                best = systems[name]["max_transfers_per_s"]
                if best:
                    quiet_after = await wait_until_quiet(ours.processes)
                    say(
                        f"ours: half of the max, {best / 2:,.0f}/s (quiet after {quiet_after:.0f}s)"
                    )
                    half = await run_step(ours, best / 2, workload.pairs(), shape)
                    progress(name, half)
                    systems[name]["latency_ms_at_half_max"] = {
                        "offered_per_s": round(best / 2, 1),
                        "waited_for_quiet_s": round(quiet_after, 1),
                        "p50": round(half.latency_ms["p50"], 1),
                        "p99": round(half.latency_ms["p99"], 1),
                        "step": half.as_json(),
                    }
                if not args.no_extras:
                    clients, seconds = (4, 2.0) if args.quick else (16, 10.0)
                    say(f"ours: deposits through the command API, {clients} clients, {seconds} s")
                    systems[name]["_deposits"] = await deposit_load(
                        ours.deposit, ids, clients, seconds
                    )
        else:
            raise SystemExit(f"unknown system {name!r}: choose from plain_sql, eventsourcing, ours")
    return systems


async def json_from_own_process(module: str, *args: str, limit: float) -> dict[str, Any]:
    """Run `python -m module args... --json` in a fresh process; return its last line, parsed.
    A process that outlives `limit` seconds is killed and ends the run with a message."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, *args, "--json", stdout=asyncio.subprocess.PIPE
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), limit)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise SystemExit(
            f"{module} did not finish in {limit:.0f} s; run `uv run python -m {module} --help`"
            " and then a small run of it alone to see where it stops"
        ) from None
    if process.returncode != 0:
        raise SystemExit(f"{module} failed with exit code {process.returncode}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


# Seconds a tool run in its own process may take beyond its load: starting and cleaning up.
SETUP_LIMIT = 120.0


async def floor_in_own_process(rate: float, shape: LoadShape) -> dict[str, Any]:
    """The empty seven-step pipeline (bench/pipeline_floor.py) at the rate ours was measured
    at half of its maximum: what the steps alone cost at that rate, next to what ours did."""
    return await json_from_own_process(
        "bench.pipeline_floor",
        *("--rate", str(rate), "--window", str(shape.window), "--warmup", str(shape.warmup)),
        limit=shape.warmup + shape.window + shape.drain + SETUP_LIMIT,
    )


async def replay_in_own_process(accounts: int, per_account: int) -> dict[str, Any]:
    """The rebuild as a user runs it, in a fresh process: not in this one, whose heap the load
    generator and the eventsourcing peer have grown (the garbage collector then scans more)."""
    return await json_from_own_process(
        "bench.projector_replay",
        *("--accounts", str(accounts), "--deposits", str(per_account)),
        # Writing the history is most of it: 17 to 20 s for 101,000 events in the eleventh
        # round's runs, so this is only for a process that hangs.
        limit=10 * SETUP_LIMIT,
    )


async def snapshots_in_own_process(quick: bool) -> dict[str, Any]:
    """Loads of a long account with and without a snapshot, and the write path's CPU with
    snapshots on and off (bench/snapshot_costs.py)."""
    quick_run = "--events 2000 --loads 20 --pairs 1 --window 2 --accounts 5 --rate 10"
    full_run = "--events 100000 --loads 200 --pairs 3 --window 20"
    options = (quick_run if quick else full_run).split()
    return await json_from_own_process("bench.snapshot_costs", *options, limit=20 * SETUP_LIMIT)


async def auth_in_own_process(quick: bool) -> dict[str, Any]:
    """A token check, a token issued and a login, timed in one process (bench/auth_costs.py)."""
    options = ["--verifications", "500", "--logins", "2"] if quick else []
    return await json_from_own_process("bench.auth_costs", *options, limit=20 * SETUP_LIMIT)


def summary(steps: list[Step]) -> dict[str, Any]:
    return {
        "max_transfers_per_s": round(max_sustained(steps), 1),
        "steps": [s.as_json() for s in steps],
    }


async def main(argv: Sequence[str] | None = None) -> Path:
    args = parse_args(argv)
    rates = (
        [float(r) for r in args.rates.split(",")]
        if args.rates
        else list(QUICK_RATES if args.quick else FULL_RATES)
    )
    shape = (
        LoadShape(warmup=1.0, window=2.0, drain=30.0, max_p99_ms=30_000.0, warm_up=0.0, refine=0)
        if args.quick
        else LoadShape()
    )
    if args.window:
        shape = dataclasses.replace(shape, window=args.window)
    infra = LocalInfra()
    # Left as found: a cluster that was running stays up, one started here is stopped.
    was_running = all(infra.status().values())
    say("starting Kafka and PostgreSQL (bank-infra start --infra-only)")
    await asyncio.to_thread(infra.start)
    try:
        json_path = await run_all(args, infra, rates, shape, argv)
    finally:
        if not was_running:
            say("stopping Kafka and PostgreSQL")
            await asyncio.to_thread(infra.stop)
    say(f"results: {json_path}")
    return json_path


async def run_all(
    args: argparse.Namespace,
    infra: LocalInfra,
    rates: Sequence[float],
    shape: LoadShape,
    argv: Sequence[str] | None,
) -> Path:
    pg = infra.config.pg
    started = time.perf_counter()
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.suite", *(argv or sys.argv[1:])]),
        **await describe(pg, infra),
        "load": {
            "kind": "open loop, latency from the scheduled send time",
            "rates_per_s": rates,
            "held_warm_up_before_sweep": {
                "seconds": shape.warm_up,
                "rate_per_s": shape.warm_up_rate,
            },
            "warmup_s": shape.warmup,
            "window_s": shape.window,
            "drain_s": shape.drain,
            "sustained_when": f"nothing lost, p99 <= {shape.max_p99_ms:g} ms and achieved >="
            f" {shape.min_achieved_share:.0%} of offered",
            "missed_step": "run once more at the same rate once the system is quiet;"
            " the sweep stops if it misses again"
            if shape.repeat_missed
            else "the sweep stops",
            "refinement_steps": shape.refine,
            "refinement": "after the sweep stops, each step runs at the middle of the highest"
            " rate held and the lowest missed (missed steps run again as above)",
            "initial_balance": str(INITIAL_BALANCE),
            "peer_connections": PEER_CONNECTIONS,
        },
    }
    systems = await bench_transfers(args, pg, shape, rates)
    deposits = systems.get("ours", {}).pop("_deposits", None)
    results["systems"] = systems
    half = systems.get("ours", {}).get("latency_ms_at_half_max")
    if half and not args.no_extras:
        # From a quiet machine, as ours' half-max step was: ours has just been torn down.
        await wait_until_quiet({"kafka": infra.kafka.pid()})
        say(
            f"the empty seven-step pipeline at {half['offered_per_s']:,.0f}/s"
            " (bench.pipeline_floor)"
        )
        results["pipeline_floor"] = await floor_in_own_process(half["offered_per_s"], shape)
    if deposits:
        results["account_commands"] = deposits
    if not args.no_extras:
        accounts, per_account = (100, 9) if args.quick else (1000, 100)
        say(f"projector replay: writing {accounts * (per_account + 1):,} events, then rebuilding")
        results["projector_replay"] = await replay_in_own_process(accounts, per_account)
        say("snapshots: loads of a long account, and the write path on and off")
        results["snapshots"] = await snapshots_in_own_process(args.quick)
        say("authentication: a token check, a token issued and a login, in one process")
        results["authentication"] = await auth_in_own_process(args.quick)
    results["duration_s"] = round(time.perf_counter() - started, 1)

    out: Path = args.out
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    stem = out / f"bench-{datetime.now(UTC):%Y%m%dT%H%M%SZ}{'-quick' if args.quick else ''}"
    json_path, png_path = stem.with_suffix(".json"), stem.with_suffix(".png")
    results["plot"] = str(png_path)
    report.plot(results, png_path)
    report.write_json(results, json_path)
    say("")
    say(report.table(results))
    say(f"plot: {png_path}")
    return json_path


if __name__ == "__main__":
    uvloop.run(main())
