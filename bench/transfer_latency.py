"""Transfer latency on the local stack: from POST /transfers to TransferCompleted on Kafka.

Usage (against `make start`, or any cluster named by the BANK_* variables):
    uv run python -m bench.transfer_latency --transfers 300 --concurrency 1

It starts the accounts service, the transfers saga and the command API as their own processes
on fresh topics, logs in as the teller, opens accounts through the API, then sends transfers
(`--concurrency` at a
time) and takes each completion time from a consumer of the transfer events topic, not by
polling an API. Printed figures are for this machine and these settings only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import time
import uuid
from typing import Any

import httpx
import uvloop
from aiokafka import AIOKafkaConsumer

from bank_deploy.credentials import demo_passwords
from bank_shared.contracts.actors import TELLER
from bank_shared.contracts.envelope import Envelope
from bank_shared.settings import AuthSettings, KafkaSettings, PostgresSettings
from bank_shared.topics import TopicSettings
from bench.cluster import running
from bench.login import BearerLogin
from bench.openloop import latency_summary
from bench.systems.ours import API, service_env


class Completions:
    """When each transfer finished, as seen on the transfer events topic."""

    def __init__(self) -> None:
        self._seen: dict[str, asyncio.Future[float]] = {}

    def future(self, transfer_id: str) -> asyncio.Future[float]:
        return self._seen.setdefault(transfer_id, asyncio.get_running_loop().create_future())

    def finished(self, transfer_id: str, at: float) -> None:
        future = self.future(transfer_id)
        if not future.done():
            future.set_result(at)


async def watch_completions(
    kafka: KafkaSettings, topic: str, done: Completions, ready: asyncio.Event
) -> None:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap,
        group_id=f"bench-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    ready.set()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    envelope = Envelope.model_validate_json(record.value)
                    if envelope.type in ("TransferCompleted", "TransferFailed"):
                        done.finished(envelope.stream_id or "", now)
    finally:
        await consumer.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--accounts", type=int, default=20)
    args = parser.parse_args()

    kafka, run = KafkaSettings(), uuid.uuid4().hex[:8]
    topics = TopicSettings().prefixed(f"bench.{run}")
    env = service_env(run, PostgresSettings())
    latencies: list[float] = []
    async with running({"accounts", "transfers-saga", "command-api"}, env, run) as cluster:
        done = Completions()
        ready = asyncio.Event()
        watcher = asyncio.create_task(watch_completions(kafka, topics.transfer_events, done, ready))
        try:
            elapsed = await measure(args, API, cluster.auth, done, ready, latencies)
        finally:
            watcher.cancel()
    report(args, kafka, latencies, elapsed)


async def measure(
    args: argparse.Namespace,
    api: str,
    auth: AuthSettings,
    done: Completions,
    ready: asyncio.Event,
    latencies: list[float],
) -> float:
    """Log in, open the accounts, send the transfers; return how long the transfers took."""
    await ready.wait()
    async with httpx.AsyncClient(base_url=api, timeout=30) as client:
        form = {"username": TELLER, "password": demo_passwords(auth)[TELLER]}

        async def log_in() -> dict[str, Any]:
            answer = await client.post("/token", data=form)
            answer.raise_for_status()
            token: dict[str, Any] = answer.json()
            return token

        login = BearerLogin(log_in)
        accounts = []
        for i in range(args.accounts):
            answer = await client.post(
                "/accounts",
                json={"owner": f"Bench {i}", "initial_balance": "1000000"},
                headers=await login.headers(),
            )
            answer.raise_for_status()
            accounts.append(answer.json()["account_id"])
        rng = random.Random(7)

        async def one_transfer() -> None:
            source, target = rng.sample(accounts, 2)
            sent = time.perf_counter()
            answer = await client.post(
                "/transfers",
                json={
                    "source_account_id": source,
                    "target_account_id": target,
                    "amount": "1.00",
                },
                headers=await login.headers(),
            )
            answer.raise_for_status()
            finished = await asyncio.wait_for(done.future(answer.json()["transfer_id"]), 60)
            latencies.append(finished - sent)

        async def worker(count: int) -> None:
            for _ in range(count):
                await one_transfer()

        share, extra = divmod(args.transfers, args.concurrency)
        started = time.perf_counter()
        await asyncio.gather(*(worker(share + (i < extra)) for i in range(args.concurrency)))
        return time.perf_counter() - started


def report(
    args: argparse.Namespace, kafka: KafkaSettings, latencies: list[float], elapsed: float
) -> None:
    ms = latency_summary([value * 1000 for value in latencies])
    print(
        f"machine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()};"
        f" Kafka {kafka.bootstrap}; one process per service; fsync on"
    )
    print(
        f"{len(latencies)} transfers, concurrency {args.concurrency},"
        f" {len(latencies) / elapsed:.1f}/s: POST -> TransferCompleted p50 {ms['p50']:.1f} ms,"
        f" p90 {ms['p90']:.1f} ms, p99 {ms['p99']:.1f} ms, max {ms['max']:.1f} ms"
    )


if __name__ == "__main__":
    uvloop.run(main())
