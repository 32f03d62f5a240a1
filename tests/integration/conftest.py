"""Integration fixtures: per-session topics, a producer, the services in-process, and pools on a
test's own databases."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from bank_accounts.app import create_app as accounts_app
from bank_accounts.settings import AccountsSettings
from bank_deploy.postgres import create_databases
from bank_deploy.providers import Endpoints
from bank_projector.app import create_app as projector_app
from bank_projector.settings import ProjectorSettings
from bank_shared.db import create_pool
from bank_shared.eventstore.migrate import migrate
from bank_shared.service import EVENT_STORE, Platform
from bank_shared.topics import TopicSettings
from bank_transfers_saga.app import create_app as saga_app
from bank_transfers_saga.settings import SagaSettings
from tests.conftest import drop_databases, session_databases
from tests.support import TopicTap, fresh_topics, make_producer, running


@pytest.fixture(scope="session")
def topics() -> TopicSettings:
    """Fresh topic names per session: a rerun never reads an earlier run's messages."""
    return fresh_topics("session")


@pytest.fixture
async def isolated(infra: Endpoints) -> AsyncIterator[Endpoints]:
    """The same servers, with databases of this test's own: for a test that runs services on
    topics of its own, whose events the session's projector never sees."""
    pg = session_databases(infra.pg)
    await create_databases(pg)
    yield dataclasses.replace(infra, pg=pg)
    await drop_databases(pg)


async def migrated_pool(dsn: str, *packages: str) -> asyncpg.Pool[Any]:
    pool = await create_pool(dsn, size=4)
    async with pool.acquire() as conn:
        await migrate(conn, *packages)
    return pool


@pytest.fixture
async def accounts_db(isolated: Endpoints) -> AsyncIterator[asyncpg.Pool[Any]]:
    """A pool on this test's own accounts database, migrated, for driving a handler directly."""
    pool = await migrated_pool(isolated.pg.dsn(isolated.pg.accounts_db), EVENT_STORE)
    yield pool
    await pool.close()


@pytest.fixture
async def transfers_db(isolated: Endpoints) -> AsyncIterator[asyncpg.Pool[Any]]:
    """A pool on this test's own transfers database, migrated, for driving the saga directly."""
    pool = await migrated_pool(
        isolated.pg.dsn(isolated.pg.transfers_db),
        EVENT_STORE,
        "bank_transfers_saga.migrations",
    )
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def accounts_settings(infra: Endpoints, topics: TopicSettings) -> AccountsSettings:
    return AccountsSettings(
        kafka=infra.kafka,
        pg=infra.pg,
        topics=topics,
        consumer_group=f"accounts-{uuid.uuid4().hex[:8]}",
        relay_poll_interval=0.2,
    )


@pytest.fixture(scope="session")
async def accounts(accounts_settings: AccountsSettings) -> AsyncIterator[Platform]:
    async with running(accounts_app(accounts_settings)) as platform:
        yield platform


@pytest.fixture(scope="session")
def saga_settings(infra: Endpoints, topics: TopicSettings) -> SagaSettings:
    run = uuid.uuid4().hex[:8]
    return SagaSettings(
        kafka=infra.kafka,
        pg=infra.pg,
        topics=topics,
        commands_group=f"saga-commands-{run}",
        answers_group=f"saga-answers-{run}",
        relay_poll_interval=0.2,
    )


@pytest.fixture(scope="session")
async def saga(saga_settings: SagaSettings, accounts: Platform) -> AsyncIterator[Platform]:
    async with running(saga_app(saga_settings)) as platform:
        yield platform


@pytest.fixture(scope="session")
def projector_settings(infra: Endpoints, topics: TopicSettings) -> ProjectorSettings:
    run = uuid.uuid4().hex[:8]
    return ProjectorSettings(
        kafka=infra.kafka,
        pg=infra.pg,
        topics=topics,
        accounts_group=f"projector-accounts-{run}",
        transfers_group=f"projector-transfers-{run}",
    )


@pytest.fixture(scope="session")
async def projector(projector_settings: ProjectorSettings) -> AsyncIterator[Platform]:
    async with running(projector_app(projector_settings)) as platform:
        yield platform


@pytest.fixture(scope="session")
async def producer(infra: Endpoints) -> AsyncIterator[AIOKafkaProducer]:
    producer = make_producer(infra.kafka, client_id="tests")
    await producer.start()
    yield producer
    await producer.stop()


async def _tap(infra: Endpoints, topic: str) -> AsyncIterator[TopicTap]:
    tap = await TopicTap(infra.kafka, topic).start()
    yield tap
    await tap.stop()


@pytest.fixture(scope="session")
async def outcomes(
    infra: Endpoints, topics: TopicSettings, accounts: Platform
) -> AsyncIterator[TopicTap]:
    async for tap in _tap(infra, topics.command_outcomes):
        yield tap


@pytest.fixture(scope="session")
async def step_outcomes(
    infra: Endpoints, topics: TopicSettings, accounts: Platform
) -> AsyncIterator[TopicTap]:
    async for tap in _tap(infra, topics.step_outcomes):
        yield tap


@pytest.fixture(scope="session")
async def account_events(
    infra: Endpoints, topics: TopicSettings, accounts: Platform
) -> AsyncIterator[TopicTap]:
    async for tap in _tap(infra, topics.account_events):
        yield tap


@pytest.fixture(scope="session")
async def dead_letters(
    infra: Endpoints, topics: TopicSettings, accounts: Platform
) -> AsyncIterator[TopicTap]:
    async for tap in _tap(infra, topics.dead_letters):
        yield tap
