"""A batch that fails is redelivered, not skipped; one that always fails because of one
message gets that message dead-lettered, and the others applied; a graceful stop leaves
nothing applied to be delivered again."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from functools import partial

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bank_accounts.account import BANK_ACCOUNT, AccountState
from bank_accounts.handlers import on_account_commands
from bank_accounts.settings import AccountsSettings
from bank_deploy.providers import Endpoints
from bank_shared.contracts.accounts import (
    ACCOUNT_COMMANDS,
    AccountCommand,
    DepositMoney,
    OpenAccount,
)
from bank_shared.contracts.actors import TELLER
from bank_shared.contracts.envelope import to_bytes
from bank_shared.contracts.outcomes import CommandOutcome
from bank_shared.eventstore.store import PostgresStorage
from bank_shared.eventstore.unit_of_work import EventStore
from bank_shared.messaging import consume
from bank_shared.messaging.consume import Batch
from bank_shared.service import EVENT_STORE, Platform
from bank_shared.topics import TopicSettings, account_topics
from tests.support import TopicTap, caused_by, envelope_for, eventually, history, new_id, send

pytestmark = pytest.mark.integration


class FailsOnce:
    """The accounts service's handler, made to raise the first time it meets one chosen
    command, as a lost database connection would; and every time it meets the `broken` one,
    as a bug would."""

    def __init__(self, accounts: EventStore[AccountState]) -> None:
        self.accounts = accounts
        self.failing: uuid.UUID | None = None
        self.broken: uuid.UUID | None = None
        self.failures = 0

    async def __call__(self, commands: Batch[AccountCommand]) -> list[CommandOutcome]:
        if any(e.message_id == self.failing for e, _ in commands) and self.failures == 0:
            self.failures += 1
            raise ConnectionResetError("simulated: connection to PostgreSQL lost")
        if any(e.message_id == self.broken for e, _ in commands):
            raise TypeError("simulated: a bug this command always triggers")
        return await on_account_commands(self.accounts, commands)


def accounts_service(
    settings: AccountsSettings,
    handle: Callable[
        [EventStore[AccountState]], Callable[[Batch[AccountCommand]], Awaitable[object]]
    ],
    *,
    relay: bool = True,
) -> Platform:
    """An accounts service on the session's database, with topics and a group of its own,
    whose subscriber is `handle(store)`."""
    topics = settings.topics
    platform = Platform(
        settings.consumer_group,
        settings,
        database=settings.pg.accounts_db,
        migrations=[EVENT_STORE],
        topics=account_topics(topics),
        relay=settings.relay if relay else None,
    )
    store = EventStore(
        PostgresStorage(platform), BANK_ACCOUNT, topics, events_topic=topics.account_events
    )
    platform.consume(
        topics.account_commands,
        handle(store),
        group_id=settings.consumer_group,
        accepts=ACCOUNT_COMMANDS,
        dead_letters=platform.dead_letters(answers=store.storage),
        title=settings.consumer_group,
    )
    return platform


def own_settings(infra: Endpoints, topics: TopicSettings, name: str) -> AccountsSettings:
    run = uuid.uuid4().hex[:8]
    own = topics.model_copy(
        update={"account_commands": f"test.{name}.{run}.commands", "partitions": 1}
    )
    return AccountsSettings(
        kafka=infra.kafka,
        pg=infra.pg,
        topics=own,
        consumer_group=f"{name}-{run}",
        relay_poll_interval=0.2,
    )


@pytest.fixture
async def flaky_service(
    infra: Endpoints, topics: TopicSettings
) -> AsyncIterator[tuple[FailsOnce, TopicSettings]]:
    settings = own_settings(infra, topics, "flaky")
    handlers: list[FailsOnce] = []

    def flaky(store: EventStore[AccountState]) -> FailsOnce:
        handlers.append(FailsOnce(store))
        return handlers[0]

    async with accounts_service(settings, flaky).running():
        yield handlers[0], settings.topics


async def test_a_failed_command_is_redelivered_and_the_commands_after_it_are_not_skipped(
    flaky_service: tuple[FailsOnce, TopicSettings],
    producer: AIOKafkaProducer,
    outcomes: TopicTap,
) -> None:
    handler, own = flaky_service
    account = new_id("frank")
    opening = envelope_for(OpenAccount(account_id=account, owner="Frank", owned_by=TELLER))
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
    flaky_service: tuple[FailsOnce, TopicSettings],
    producer: AIOKafkaProducer,
    outcomes: TopicTap,
    dead_letters: TopicTap,
) -> None:
    handler, own = flaky_service
    account = new_id("heidi")
    opening = envelope_for(OpenAccount(account_id=account, owner="Heidi", owned_by=TELLER))
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
    settings = own_settings(infra, topics, "stop")
    own, group = settings.topics, settings.consumer_group
    account = new_id("gil")
    commands = [
        envelope_for(OpenAccount(account_id=account, owner="Gil", owned_by=TELLER)),
        envelope_for(DepositMoney(account_id=account, amount="3")),
    ]
    dsn = infra.pg.dsn(infra.pg.accounts_db)
    async with accounts_service(
        settings, lambda store: partial(on_account_commands, store), relay=False
    ).running():
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
    return len(await history(dsn, stream_id)) >= version
