"""For the outbox relay's tests: a database of its own, topics of its own, a history of
committed but unpublished rows, and how that history looks once it reached Kafka."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from bank_deploy.providers import Endpoints
from bank_shared.contracts.accounts import DepositMoney, OpenAccount
from bank_shared.contracts.actors import TELLER
from bank_shared.db import create_pool
from bank_shared.eventstore.migrate import migrate
from bank_shared.messaging.kafka import ensure_topics
from bank_shared.service import EVENT_STORE
from bank_shared.topics import TopicSettings, account_topics
from tests.support import TopicTap, account_store, decide, keyed

STREAMS, DEPOSITS = 3, 4  # each stream: AccountOpened + 4 MoneyDeposited = versions 1..5
TOTAL = STREAMS * (1 + DEPOSITS)
IN_ORDER = list(range(1, DEPOSITS + 2))


@pytest.fixture
async def store_dsn(infra: Endpoints) -> AsyncIterator[str]:
    """A fresh event-store database, so only this test's relay publishes its outbox."""
    name = f"relay_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(infra.pg.dsn("postgres"))
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = infra.pg.dsn(name)
    conn = await asyncpg.connect(dsn)
    await migrate(conn, EVENT_STORE)
    await conn.close()
    yield dsn
    await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture
async def relay_topics(infra: Endpoints) -> TopicSettings:
    run = uuid.uuid4().hex[:8]
    topics = TopicSettings(
        account_commands=f"test.relay.{run}.commands",
        account_events=f"test.relay.{run}.events",
        command_outcomes=f"test.relay.{run}.outcomes",
        step_outcomes=f"test.relay.{run}.step-outcomes",
        dead_letters=f"test.relay.{run}.dead",
        partitions=3,
    )
    await ensure_topics(infra.kafka, account_topics(topics))
    return topics


async def commit_history(dsn: str, topics: TopicSettings) -> list[str]:
    """Commit events and outbox rows for a few streams, with no relay running."""
    pool = await create_pool(dsn, size=2)
    store = account_store(pool, topics)
    accounts = [f"acct-{uuid.uuid4().hex[:8]}" for _ in range(STREAMS)]
    try:
        for account in accounts:
            await decide(store, OpenAccount(account_id=account, owner="Relay", owned_by=TELLER))
        for _ in range(DEPOSITS):
            for account in accounts:
                await decide(store, DepositMoney(account_id=account, amount="1.00"))
    finally:
        await pool.close()
    return accounts


async def unpublished(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        return count
    finally:
        await conn.close()


def versions_by_stream(tap: TopicTap, accounts: list[str]) -> dict[str, list[int]]:
    return {a: [r.envelope.stream_version or 0 for r in tap.matching(keyed(a))] for a in accounts}
