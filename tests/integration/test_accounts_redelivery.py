"""A batch that fails is redelivered, not skipped; one that always fails because of one
message gets that message dead-lettered, and the others applied."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal

import pytest
from aiokafka import AIOKafkaProducer
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
from bank_shared.messaging.consume import DeadLetters
from bank_shared.runtime import Runtime, run_runtime
from bank_shared.topics import TopicSettings, account_topics
from tests.support import TopicTap, caused_by, envelope_for, new_id, send

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
                DeadLetters(runtime.producer, own.dead_letters),
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
        relay=RelaySettings(lock_key=7_345_100_001, poll_interval=0.2),
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


async def test_a_command_that_always_fails_is_dead_lettered_and_the_rest_are_applied(
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
    assert "a bug this command always triggers" in letter.headers["dead-letter-reason"].decode()
    assert isinstance(last.message, CommandOutcome)
    assert (last.message.version, last.message.balance) == (2, Decimal("2.00"))
    assert outcomes.matching(caused_by(broken.message_id)) == []
