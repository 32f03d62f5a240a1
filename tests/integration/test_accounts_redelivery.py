"""A batch that fails is redelivered, not skipped; one that always fails because of one
message gets that message dead-lettered, and the others applied; a graceful stop leaves
nothing applied to be delivered again."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from functools import partial

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from faststream.kafka import KafkaRouter

from bank_accounts.account import AccountCommandHandler
from bank_accounts.handlers import build_router
from bank_deploy.providers import Endpoints
from bank_shared.contracts.accounts import (
    AccountCommand,
    DepositMoney,
    OpenAccount,
)
from bank_shared.contracts.envelope import Envelope, to_bytes
from bank_shared.contracts.outcomes import CommandOutcome
from bank_shared.eventstore.relay import RelaySettings
from bank_shared.eventstore.store import load_stream
from bank_shared.messaging import consume
from bank_shared.messaging.consume import DeadLetters
from bank_shared.runtime import Runtime, run_runtime
from bank_shared.topics import TopicSettings, TopicSpec, account_topics
from tests.support import TopicTap, caused_by, envelope_for, eventually, new_id, send

pytestmark = pytest.mark.integration


class FailsOnceHandler(AccountCommandHandler):
    """Raises the first time it meets one chosen command, as a lost database connection would;
    and every time it meets the `broken` one, as a bug would."""

    failing: uuid.UUID | None = None
    broken: uuid.UUID | None = None
    failures = 0

    async def handle_batch(
        self, commands: Sequence[tuple[Envelope, AccountCommand]]
    ) -> list[CommandOutcome]:
        if any(e.message_id == self.failing for e, _ in commands) and self.failures == 0:
            self.failures += 1
            raise ConnectionResetError("simulated: connection to PostgreSQL lost")
        if any(e.message_id == self.broken for e, _ in commands):
            raise TypeError("simulated: a bug this command always triggers")
        return await super().handle_batch(commands)


@pytest.fixture
async def flaky_service(
    infra: Endpoints, topics: TopicSettings
) -> AsyncIterator[tuple[Runtime, FailsOnceHandler, TopicSettings]]:
    run = uuid.uuid4().hex[:8]
    own = TopicSettings(
        account_commands=f"test.flaky.{run}.commands",
        account_events=topics.account_events,
        command_outcomes=topics.command_outcomes,
        step_outcomes=topics.step_outcomes,
        dead_letters=topics.dead_letters,
        partitions=1,
    )
    holder: list[FailsOnceHandler] = []

    def routers(runtime: Runtime) -> list[KafkaRouter]:
        handler = FailsOnceHandler(runtime.pool, own)
        holder.append(handler)
        return [
            build_router(
                own,
                handler,
                DeadLetters(runtime.producer, own.dead_letters, answer_commands=own),
                group_id=f"flaky-{run}",
            )
        ]

    async with run_runtime(
        name="accounts-flaky",
        dsn=infra.pg.dsn(infra.pg.accounts_db),
        kafka=infra.kafka,
        topics=account_topics(own),
        migrations=["bank_shared.eventstore.migrations"],
        pool_size=4,
        routers=routers,
        relay=RelaySettings(lease_key=7_345_100_001, poll_interval=0.2),
    ) as runtime:
        yield runtime, holder[0], own


async def test_a_failed_command_is_redelivered_and_the_commands_after_it_are_not_skipped(
    flaky_service: tuple[Runtime, FailsOnceHandler, TopicSettings],
    producer: AIOKafkaProducer,
    outcomes: TopicTap,
) -> None:
    _, handler, own = flaky_service
    account = new_id("frank")
    opening = envelope_for(OpenAccount(account_id=account, owner="Frank"))
    first = envelope_for(DepositMoney(account_id=account, amount="1.00"))
    second = envelope_for(DepositMoney(account_id=account, amount="2.00"))
    handler.failing = first.message_id
    for command in (opening, first, second):
        await send(producer, own.account_commands, account, command)

    [after_retry] = (await outcomes.wait_for(caused_by(first.message_id)))[:1]
    [last] = (await outcomes.wait_for(caused_by(second.message_id)))[:1]
    assert handler.failures == 1
    assert isinstance(after_retry.message, CommandOutcome)
    assert isinstance(last.message, CommandOutcome)
    assert (after_retry.message.version, after_retry.message.balance) == (2, Decimal("1.00"))
    assert (last.message.version, last.message.balance) == (3, Decimal("3.00"))


async def test_a_command_that_always_fails_is_dead_lettered_answered_and_the_rest_applied(
    flaky_service: tuple[Runtime, FailsOnceHandler, TopicSettings],
    producer: AIOKafkaProducer,
    outcomes: TopicTap,
    dead_letters: TopicTap,
) -> None:
    _, handler, own = flaky_service
    account = new_id("heidi")
    opening = envelope_for(OpenAccount(account_id=account, owner="Heidi"))
    broken = envelope_for(DepositMoney(account_id=account, amount="1.00"))
    after = envelope_for(DepositMoney(account_id=account, amount="2.00"))
    handler.broken = broken.message_id
    for command in (opening, broken, after):
        await send(producer, own.account_commands, account, command)

    [last] = (await outcomes.wait_for(caused_by(after.message_id)))[:1]
    [letter] = await dead_letters.wait_for(lambda r: r.value == to_bytes(broken))
    [refused] = (await outcomes.wait_for(caused_by(broken.message_id)))[:1]
    assert "a bug this command always triggers" in letter.headers["dead-letter-reason"].decode()
    assert isinstance(last.message, CommandOutcome)
    assert (last.message.version, last.message.balance) == (2, Decimal("2.00"))
    # Its sender is told, not left waiting: rejected, with the reason.
    assert isinstance(refused.message, CommandOutcome)
    assert (refused.message.status, refused.message.code) == ("rejected", "unprocessable_command")
    assert refused.message.command_id == broken.message_id
    assert "a bug this command always triggers" in (refused.message.reason or "")


async def test_a_graceful_stop_commits_the_offsets_of_everything_applied(
    infra: Endpoints,
    topics: TopicSettings,
    producer: AIOKafkaProducer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Background commits pause between rounds (COMMIT_INTERVAL, made a minute here, for the
    subscribers registered from now on: this test's): a stop must not leave what was applied
    meanwhile for the group's next consumer to handle again."""
    monkeypatch.setattr(consume, "COMMIT_INTERVAL", 60.0)
    run = uuid.uuid4().hex[:8]
    own = topics.model_copy(update={"account_commands": f"test.stop.{run}.commands"})
    group = f"stop-{run}"
    account = new_id("gil")
    commands = [
        envelope_for(OpenAccount(account_id=account, owner="Gil")),
        envelope_for(DepositMoney(account_id=account, amount="3")),
    ]

    def routers(runtime: Runtime) -> list[KafkaRouter]:
        handler = AccountCommandHandler(runtime.pool, own)
        dead_letters = DeadLetters(runtime.producer, own.dead_letters)
        return [build_router(own, handler, dead_letters, group_id=group)]

    dsn = infra.pg.dsn(infra.pg.accounts_db)
    async with run_runtime(
        name="accounts-stop",
        dsn=dsn,
        kafka=infra.kafka,
        topics=[TopicSpec(own.account_commands, 1)],
        migrations=["bank_shared.eventstore.migrations"],
        pool_size=2,
        routers=routers,
        relay=None,
    ):
        # One at a time: the first batch's commit starts the pause, the second's waits for it.
        for version, command in enumerate(commands, start=1):
            await send(producer, own.account_commands, account, command)
            await eventually(partial(has_version, dsn, account, version), what=f"v{version}")

    consumer = AIOKafkaConsumer(bootstrap_servers=infra.kafka.bootstrap, group_id=group)
    await consumer.start()
    try:
        partition = TopicPartition(own.account_commands, 0)
        assert await consumer.committed(partition) == len(commands)
    finally:
        await consumer.stop()


async def has_version(dsn: str, stream_id: str, version: int) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return len(await load_stream(conn, stream_id)) >= version
    finally:
        await conn.close()
