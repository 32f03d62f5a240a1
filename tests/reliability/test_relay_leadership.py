"""A relay leader paused with SIGSTOP for a minute, holding rows it read: a standby publishes
them within the lease's bound, and the old leader, once woken, sends none of them (no stream's
messages reach Kafka out of version order)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from bank_deploy.providers import Endpoints
from bank_shared.topics import TopicSettings
from tests.outbox_history import (
    IN_ORDER,
    TOTAL,
    commit_history,
    unpublished,
    versions_by_stream,
)
from tests.support import TopicTap, eventually, records_in_topic

pytestmark = pytest.mark.reliability

PAUSE = 60.0
LEASE = 3.0
# The bound a standby takes over in (the lease and one standby poll), and time to publish.
TAKEOVER = LEASE + 0.2
PUBLISHED_WITHIN = TAKEOVER + 10.0


async def started_relay(
    infra: Endpoints, dsn: str, log: Path, *, pause_at: str | None = None
) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "BANK_KAFKA_BOOTSTRAP_SERVERS": infra.kafka.bootstrap,
        "BANK_TEST_RELAY_DSN": dsn,
        "BANK_TEST_RELAY_LEASE_KEY": "1",
        "BANK_TEST_RELAY_LEASE_DURATION": str(LEASE),
    }
    if pause_at:
        env["BANK_TEST_RELAY_PAUSE_AT"] = pause_at
    with log.open("ab") as output:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.relay_process", env=env, stdout=output, stderr=output
        )


def stopped(pid: int) -> bool:
    """The process is stopped by a signal (state T in /proc)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "T"


async def lease_of(dsn: str) -> tuple[str, object] | None:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow("SELECT holder, expires_at FROM relay_lease")
    finally:
        await conn.close()
    return None if row is None else (row["holder"], row["expires_at"])


@contextlib.asynccontextmanager
async def relays(*processes: asyncio.subprocess.Process) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for process in processes:
            if process.returncode is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
                await process.wait()


async def test_a_leader_paused_for_a_minute_is_replaced_and_sends_nothing_when_it_wakes(
    infra: Endpoints, store_dsn: str, relay_topics: TopicSettings, tmp_path: Path
) -> None:
    accounts = await commit_history(store_dsn, relay_topics)
    old = await started_relay(infra, store_dsn, tmp_path / "old.log", pause_at="fetched")
    async with relays(old):
        await eventually(lambda: stopped(old.pid), what="the leader to stop with rows in hand")
        paused_at = time.monotonic()
        standby = await started_relay(infra, store_dsn, tmp_path / "standby.log")
        async with relays(standby):
            tap = await TopicTap(infra.kafka, relay_topics.account_events).start()
            try:
                await tap.wait_for(lambda r: r.key in accounts, count=TOTAL, within=60)
                published_after = time.monotonic() - paused_at
                await eventually(lambda: _none_left(store_dsn), what="every row marked")

                await asyncio.sleep(max(0.0, PAUSE - (time.monotonic() - paused_at)))
                old.send_signal(signal.SIGCONT)
                # The standby stops without handing the lease over: the old leader takes it
                # once it expires, and renews it after its first round as leader again.
                standby.kill()
                await standby.wait()
                back = LeaseWatch(store_dsn, old.pid)
                await eventually(back.renewed, within=30, what="the old leader leading again")
            finally:
                await tap.stop()
    assert published_after < PUBLISHED_WITHIN
    assert await records_in_topic(infra.kafka, relay_topics.account_events) == TOTAL
    assert versions_by_stream(tap, accounts) == dict.fromkeys(accounts, IN_ORDER)


async def _none_left(dsn: str) -> bool:
    return await unpublished(dsn) == 0


class LeaseWatch:
    """Whether a process holds the lease and has renewed it since it took it: a round of its
    leadership has passed."""

    def __init__(self, dsn: str, pid: int) -> None:
        self.dsn, self.pid = dsn, pid
        self.taken: tuple[str, object] | None = None

    async def renewed(self) -> bool:
        lease = await lease_of(self.dsn)
        if lease is None or f"/{self.pid}/" not in lease[0]:
            return False
        if self.taken is None or self.taken[0] != lease[0]:
            self.taken = lease
        return lease[1] != self.taken[1]
