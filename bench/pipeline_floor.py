"""The empty seven-step pipeline: a transfer's steps with only a fetch, a commit and a send.

    uv run python -m bench.pipeline_floor --rate 270 --window 30

A transfer in the bank is seven steps in a row (command API, saga, accounts, saga, accounts,
saga, projector): each a PostgreSQL transaction and, but for the last, a publish to the next
step's topic, which the next step fetches. Here each step keeps only that: it consumes a batch
of ids, writes them in one statement (one commit, fsync on, as in the bank), then sends them to
the next step's topic through its process's one idempotent producer, the batch's sends awaited
together as the bank's relay awaits a round's. The first step is fed from Kafka where the
bank's is an HTTP request. Left out is everything else the bank does: HTTP and its framework,
JSON envelopes and pydantic, the domain, the event store's reads, the outbox and its relay
(rows written, read again and marked, the relay's linger), dead letters, offset bookkeeping.
The steps run in four processes grouped as the bank's services run them, on the same Kafka and
PostgreSQL.

So its latency at a rate is what the steps themselves cost on these 2 cores, the floor under
the bank's. Not a proof of a bound: a design that batched more could spend less CPU on Kafka
requests than this pipeline does, and a Kafka client in C, or fewer processes, would lower it
(the stack and the split are the project's). But a bank that does more in every step, on the
same stack and split, should not expect to be faster than this. The load is open loop, as in
`make bench` (`bench.openloop`): the i-th id is due at start + i / rate, and its latency runs
from then to the NOTIFY of the last step's commit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from typing import Any

import asyncpg
import uvloop
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bank_deploy.cluster import LocalInfra
from bank_shared.messaging.kafka import ensure_topics
from bank_shared.settings import KafkaSettings, PostgresSettings
from bank_shared.topics import TopicSpec
from bench.cluster import delete_topics
from bench.openloop import LoadShape, run_step
from bench.scratch import scratch_databases

STEPS = 7
# Which process runs which steps, as in the bank: command API, saga, accounts, projector.
PROCESSES = {
    "command-api": (0,),
    "transfers-saga": (1, 3, 5),
    "accounts": (2, 4),
    "projector": (6,),
}
PARTITIONS = 6  # as the bank's topics (BANK_TOPIC_PARTITIONS)
CHANNEL = "floor_done"
# Seconds for the four processes to pass one id through all seven steps before the load.
READY_TIMEOUT = 60.0


def topic(run: str, step: int) -> str:
    return f"bench.{run}.floor-{step}"


async def serve_step(
    run: str, step: int, kafka: KafkaSettings, dsn: str, producer: AIOKafkaProducer
) -> None:
    """Consume step `step`'s topic for ever: each batch one commit, then sent on."""
    consumer = AIOKafkaConsumer(
        topic(run, step),
        bootstrap_servers=kafka.bootstrap,
        group_id=f"bench-{run}-floor-{step}",
        auto_offset_reset="earliest",
        auto_commit_interval_ms=200,  # the bank commits offsets at most every 200 ms too
    )
    conn = await asyncpg.connect(dsn)
    await consumer.start()
    last = step == STEPS - 1
    try:
        while True:
            found = await consumer.getmany(timeout_ms=1000, max_records=100)
            records = [record for batch in found.values() for record in batch]
            if not records:
                continue
            ids = [record.value.decode() for record in records]
            if last:
                # The bench hears the commit, as it hears the projector's in `make bench`.
                await conn.execute(
                    "WITH written AS (INSERT INTO steps (id, step) SELECT unnest($1::text[]), $2)"
                    " SELECT pg_notify($3, $4)",
                    ids,
                    step,
                    CHANNEL,
                    ",".join(ids),
                )
                continue
            await conn.execute(
                "INSERT INTO steps (id, step) SELECT unnest($1::text[]), $2", ids, step
            )
            sends = [
                await producer.send(topic(run, step + 1), value=record.value, key=record.key)
                for record in records
            ]
            await asyncio.gather(*sends)
    finally:
        await consumer.stop()
        await conn.close()


async def serve(run: str, steps: Sequence[int], dsn: str) -> None:
    kafka = KafkaSettings()
    # One producer per process, as each bank service has one relay producer.
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap, enable_idempotence=True, linger_ms=0
    )
    await producer.start()
    try:
        await asyncio.gather(*(serve_step(run, step, kafka, dsn, producer) for step in steps))
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def processes(run: str, dsn: str) -> AsyncIterator[dict[str, asyncio.subprocess.Process]]:
    started: dict[str, asyncio.subprocess.Process] = {}
    try:
        for name, steps in PROCESSES.items():
            started[name] = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.pipeline_floor",
                "--serve",
                run,
                ",".join(map(str, steps)),
                "--dsn",
                dsn,
            )
        yield started
    finally:
        for process in started.values():
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        for process in started.values():
            await process.wait()


class EmptyPipeline:
    """The pipeline as `bench.openloop` loads ours: a transfer is an id sent to the first step,
    complete when the last step's commit is heard. Same schedule, latency, losses and CPU
    account as ours, by the same code."""

    name = "pipeline_floor"

    def __init__(
        self, producer: AIOKafkaProducer, run: str, processes: dict[str, int | None]
    ) -> None:
        self.processes = processes
        self._producer = producer
        self._run = run
        self._ids = itertools.count()
        self._finished: dict[str, asyncio.Future[None]] = {}

    def on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        for id_ in str(payload).split(","):
            finished = self._finished.pop(id_, None)
            if finished is not None and not finished.done():
                finished.set_result(None)

    async def transfer(self, source: str, target: str, amount: Decimal) -> None:
        """One id through the seven steps (the accounts and amount are not part of it)."""
        id_ = f"{next(self._ids):09d}"
        finished = asyncio.get_running_loop().create_future()
        self._finished[id_] = finished
        try:
            # Enqueued, not awaited until Kafka acknowledges: the id's latency runs to the last
            # step's commit either way, and the load generator should not wait on the producer.
            await self._producer.send(topic(self._run, 0), id_.encode(), key=id_.encode())
            await finished
        finally:
            self._finished.pop(id_, None)


async def until_ready(
    pipeline: EmptyPipeline, children: dict[str, asyncio.subprocess.Process]
) -> None:
    """One id through all seven steps: then every step is consuming. (A step that joins late
    still reads it: fresh groups start from the earliest offset.)"""
    first = asyncio.create_task(pipeline.transfer("", "", Decimal(0)))
    deadline = time.perf_counter() + READY_TIMEOUT
    while not first.done():
        exited = [name for name, child in children.items() if child.returncode is not None]
        if exited:
            first.cancel()
            raise SystemExit(
                f"pipeline_floor: the {', '.join(exited)} process exited; its error is above"
            )
        if time.perf_counter() > deadline:
            first.cancel()
            raise SystemExit(
                f"pipeline_floor: no id came through the seven steps in {READY_TIMEOUT:.0f} s;"
                " check that Kafka and PostgreSQL are up (uv run bank-infra status)"
            )
        await asyncio.wait({first}, timeout=1.0)
    await first


async def measure(rate: float, window: float, warmup: float) -> dict[str, Any]:
    """Run the pipeline at `rate` for `window` seconds after `warmup`; return what it did."""
    infra = LocalInfra()
    await asyncio.to_thread(infra.start)
    kafka = KafkaSettings()
    pg: PostgresSettings = infra.config.pg
    run = uuid.uuid4().hex[:8]
    try:
        await ensure_topics(kafka, [TopicSpec(topic(run, s), PARTITIONS) for s in range(STEPS)])
        async with scratch_databases(pg, f"floor_{run}", 1) as (database,):
            dsn = pg.dsn(database)
            listener = await asyncpg.connect(dsn)
            await listener.execute("CREATE TABLE steps (id text, step int)")
            producer = AIOKafkaProducer(
                bootstrap_servers=kafka.bootstrap, enable_idempotence=True, linger_ms=0
            )
            await producer.start()
            try:
                async with processes(run, dsn) as children:
                    pids: dict[str, int | None] = {n: c.pid for n, c in children.items()}
                    pipeline = EmptyPipeline(producer, run, {**pids, "kafka": infra.kafka.pid()})
                    await listener.add_listener(CHANNEL, pipeline.on_notify)
                    await until_ready(pipeline, children)
                    step = await run_step(
                        pipeline,
                        rate,
                        lambda: ("", "", Decimal(0)),
                        LoadShape(warmup=warmup, window=window),
                    )
            finally:
                await producer.stop()
                await listener.close()
    finally:
        await delete_topics(kafka, f"bench.{run}.")
    return {"steps": STEPS, **step.as_json()}


def describe(result: dict[str, Any]) -> str:
    ms, cpu = result["latency_ms"], result["cpu_ms_per_transfer"]
    return (
        f"floor, {result['steps']} steps: offered {result['offered_per_s']:g}/s -> achieved"
        f" {result['achieved_per_s']:.1f}/s, p50 {ms['p50']:.1f} ms, p90 {ms['p90']:.1f} ms,"
        f" p99 {ms['p99']:.1f} ms, max {ms['max']:.1f} ms, lost {result['lost']};"
        f" CPU ms per id: {', '.join(f'{name} {value:.1f}' for name, value in cpu.items())}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=270, help="offered ids per second")
    parser.add_argument("--window", type=float, default=30, help="steady window, seconds")
    parser.add_argument("--warmup", type=float, default=LoadShape().warmup, help="seconds")
    parser.add_argument("--json", action="store_true", help="end with the results as JSON")
    parser.add_argument("--serve", nargs=2, metavar=("RUN", "STEPS"), help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        run, steps = args.serve
        uvloop.run(serve(run, [int(s) for s in steps.split(",")], args.dsn))
    else:
        result = uvloop.run(measure(args.rate, args.window, args.warmup))
        print(describe(result))
        if args.json:
            print(json.dumps(result))


if __name__ == "__main__":
    main()
