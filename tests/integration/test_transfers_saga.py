"""The transfers saga with the accounts service, over the real broker and databases:
completed, failed and refunded transfers, duplicates, and overdue steps."""

from __future__ import annotations

from decimal import Decimal

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from bank_accounts.app import create_app as accounts_app
from bank_accounts.settings import AccountsSettings
from bank_deploy.providers import Endpoints
from bank_shared.contracts.accounts import OpenAccount
from bank_shared.contracts.actors import TELLER
from bank_shared.contracts.outcomes import CommandOutcome
from bank_shared.contracts.transfers import StartTransfer
from bank_shared.db import create_pool
from bank_shared.eventstore.migrate import migrate
from bank_shared.service import EVENT_STORE, Platform
from bank_shared.topics import TopicSettings
from bank_transfers_saga.app import create_app as saga_app
from bank_transfers_saga.saga import step_command_id
from bank_transfers_saga.settings import SagaSettings
from tests.support import (
    TopicTap,
    account_store,
    caused_by,
    decide,
    envelope_for,
    eventually,
    fresh_topics,
    history,
    new_id,
    running,
    send,
)
from tests.transfers_client import balance, finished_transfer, open_accounts, start_transfer

pytestmark = pytest.mark.integration


async def test_a_transfer_withdraws_deposits_and_completes_with_one_correlation_id(
    accounts: Platform,
    saga: Platform,
    accounts_settings: AccountsSettings,
    saga_settings: SagaSettings,
    topics: TopicSettings,
    producer: AIOKafkaProducer,
    outcomes: TopicTap,
    step_outcomes: TopicTap,
) -> None:
    ids = await open_accounts(accounts, topics, alice="100.00", bob="50.00")
    transfer_id, command = await start_transfer(producer, topics, ids["alice"], ids["bob"], "30")

    [accepted] = await outcomes.wait_for(caused_by(command.message_id))
    assert isinstance(accepted.message, CommandOutcome)
    assert (accepted.message.status, accepted.message.stream_id) == ("accepted", transfer_id)
    assert await finished_transfer(saga_settings.dsn, transfer_id) == [
        "TransferStarted",
        "TransferDebited",
        "TransferCompleted",
    ]
    assert await balance(accounts_settings, ids["alice"]) == Decimal("70.00")
    assert await balance(accounts_settings, ids["bob"]) == Decimal("80.00")

    # The transfer's correlation id is carried by every event it caused, in both stores.
    caused = list(await history(saga_settings.dsn, transfer_id))
    for account in (ids["alice"], ids["bob"]):
        caused += [
            e
            for e in await history(accounts_settings.dsn, account)
            if e.payload.get("transfer_id") == transfer_id
        ]
    assert len(caused) == 5
    assert {e.correlation_id for e in caused} == {command.correlation_id}

    # The answers to the saga's steps go to the saga's own topic, not the command API's.
    steps = [step_command_id(transfer_id, step) for step in ("withdraw", "deposit")]
    for step in steps:
        [answer] = await step_outcomes.wait_for(caused_by(step))
        assert isinstance(answer.message, CommandOutcome)
        assert answer.message.status == "accepted"
    assert not outcomes.matching(lambda r: any(caused_by(step)(r) for step in steps))


async def test_a_transfer_above_the_balance_fails_for_insufficient_funds_and_moves_nothing(
    accounts: Platform,
    saga: Platform,
    accounts_settings: AccountsSettings,
    saga_settings: SagaSettings,
    topics: TopicSettings,
    producer: AIOKafkaProducer,
) -> None:
    ids = await open_accounts(accounts, topics, alice="20.00", bob="0")
    transfer_id, _ = await start_transfer(producer, topics, ids["alice"], ids["bob"], "20.01")

    assert await finished_transfer(saga_settings.dsn, transfer_id) == [
        "TransferStarted",
        "TransferFailed",
    ]
    failed = (await history(saga_settings.dsn, transfer_id))[-1].payload
    assert (failed["reason"], failed["refunded"]) == ("insufficient_funds", False)
    assert await balance(accounts_settings, ids["alice"]) == Decimal("20.00")
    assert await balance(accounts_settings, ids["bob"]) == Decimal("0.00")


async def test_a_transfer_to_an_unknown_account_is_refunded_and_fails(
    accounts: Platform,
    saga: Platform,
    accounts_settings: AccountsSettings,
    saga_settings: SagaSettings,
    topics: TopicSettings,
    producer: AIOKafkaProducer,
) -> None:
    ids = await open_accounts(accounts, topics, alice="100.00")
    transfer_id, _ = await start_transfer(producer, topics, ids["alice"], new_id("nobody"), "40")

    assert await finished_transfer(saga_settings.dsn, transfer_id) == [
        "TransferStarted",
        "TransferDebited",
        "TransferCreditRefused",
        "TransferFailed",
    ]
    failed = (await history(saga_settings.dsn, transfer_id))[-1].payload
    assert (failed["reason"], failed["refunded"]) == ("target_account_not_found", True)
    alice = await history(accounts_settings.dsn, ids["alice"])
    assert [(e.type, e.payload["amount"]) for e in alice[1:]] == [
        ("MoneyWithdrawn", "40.00"),
        ("MoneyDeposited", "40.00"),
    ]
    assert await balance(accounts_settings, ids["alice"]) == Decimal("100.00")


async def test_a_transfer_from_an_unknown_account_fails_as_source_not_found(
    accounts: Platform,
    saga: Platform,
    saga_settings: SagaSettings,
    topics: TopicSettings,
    producer: AIOKafkaProducer,
) -> None:
    ids = await open_accounts(accounts, topics, bob="1.00")
    transfer_id, _ = await start_transfer(producer, topics, new_id("ghost"), ids["bob"], "5")

    await finished_transfer(saga_settings.dsn, transfer_id)
    failed = (await history(saga_settings.dsn, transfer_id))[-1].payload
    assert (failed["reason"], failed["refunded"]) == ("source_account_not_found", False)


async def test_a_second_start_with_the_same_transfer_id_is_rejected_and_a_redelivery_is_not(
    accounts: Platform,
    saga: Platform,
    saga_settings: SagaSettings,
    topics: TopicSettings,
    producer: AIOKafkaProducer,
    outcomes: TopicTap,
) -> None:
    ids = await open_accounts(accounts, topics, alice="10.00", bob="0")
    transfer_id, first = await start_transfer(producer, topics, ids["alice"], ids["bob"], "1")
    again = envelope_for(StartTransfer.model_validate(first.payload))
    await send(producer, topics.transfer_commands, transfer_id, first)  # redelivered
    await send(producer, topics.transfer_commands, transfer_id, again)  # a new command

    answers = await outcomes.wait_for(caused_by(first.message_id), count=2)
    assert len({a.value for a in answers}) == 1
    [refused] = await outcomes.wait_for(caused_by(again.message_id))
    assert isinstance(refused.message, CommandOutcome)
    assert (refused.message.status, refused.message.code) == (
        "rejected",
        "transfer_already_exists",
    )
    assert (await finished_transfer(saga_settings.dsn, transfer_id))[-1] == "TransferCompleted"


async def test_a_step_without_an_answer_is_sent_again_and_applied_once_when_answered(
    isolated: Endpoints, producer: AIOKafkaProducer
) -> None:
    """No accounts service listens at first: the withdrawal gets no answer and the saga sends
    it again with backoff. Once an accounts service starts, every copy arrives; one applies."""
    topics = fresh_topics("overdue")
    saga_settings = SagaSettings(
        kafka=isolated.kafka,
        pg=isolated.pg,
        topics=topics,
        step_timeout=0.3,
        resend_check_interval=0.1,
        relay_poll_interval=0.1,
        commands_group=f"{topics.transfer_commands}.saga",
        answers_group=f"{topics.step_outcomes}.saga",
    )
    accounts_settings = AccountsSettings(
        kafka=isolated.kafka,
        pg=isolated.pg,
        topics=topics,
        relay_poll_interval=0.1,
        consumer_group=f"{topics.account_commands}.accounts",
    )
    pool = await create_pool(accounts_settings.dsn, size=2)
    try:
        async with pool.acquire() as setup:  # no accounts service ran on this database yet
            await migrate(setup, EVENT_STORE)
        store = account_store(pool, topics)
        alice, bob = new_id("alice"), new_id("bob")
        for account, opening in ((alice, "10.00"), (bob, "0")):
            await decide(
                store,
                OpenAccount(
                    account_id=account, owner="X", initial_balance=opening, owned_by=TELLER
                ),
            )
    finally:
        await pool.close()

    async with running(saga_app(saga_settings)):
        transfer_id, _ = await start_transfer(producer, topics, alice, bob, "5")
        conn = await asyncpg.connect(saga_settings.dsn)
        try:

            async def sent_three_times() -> bool:
                attempts = await conn.fetchval(
                    "SELECT attempts FROM saga_steps WHERE transfer_id = $1 AND step = 'withdraw'",
                    transfer_id,
                )
                return bool(attempts and attempts >= 3)

            await eventually(sent_three_times, within=30, what="the withdrawal to be re-sent")
        finally:
            await conn.close()
        async with running(accounts_app(accounts_settings)):
            types = await finished_transfer(saga_settings.dsn, transfer_id)

    assert types == ["TransferStarted", "TransferDebited", "TransferCompleted"]
    withdrawals = [
        e for e in await history(accounts_settings.dsn, alice) if e.type == "MoneyWithdrawn"
    ]
    assert len(withdrawals) == 1
    assert await balance(accounts_settings, alice) == Decimal("5.00")
    assert await balance(accounts_settings, bob) == Decimal("5.00")
