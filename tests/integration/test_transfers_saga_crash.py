"""The saga process killed (SIGKILL) after the withdrawal and before the deposit: once it is
restarted, the transfer completes, and the money is debited once and credited once."""

from __future__ import annotations

import signal
from decimal import Decimal

import pytest
from aiokafka import AIOKafkaProducer

from bank_accounts.app import create_app as accounts_app
from bank_accounts.settings import AccountsSettings
from bank_deploy.providers import Endpoints, free_port
from bank_transfers_saga.settings import SagaSettings
from tests.support import ServiceProcess, eventually, fresh_topics, history, running, service_env
from tests.transfers_client import balance, finished_transfer, open_accounts, start_transfer

pytestmark = pytest.mark.integration

CRASH_POINT = "transfers-saga.after-debit-before-commit"


async def test_a_saga_killed_between_debit_and_deposit_completes_after_restart_exactly_once(
    isolated: Endpoints, producer: AIOKafkaProducer
) -> None:
    topics = fresh_topics("crash")
    accounts_settings = AccountsSettings(
        kafka=isolated.kafka,
        pg=isolated.pg,
        topics=topics,
        relay_poll_interval=0.1,
        consumer_group=f"{topics.account_commands}.accounts",
    )
    saga_dsn = SagaSettings(pg=isolated.pg).dsn
    env = service_env(isolated.kafka, isolated.pg, topics) | {
        "BANK_SAGA_COMMANDS_GROUP": f"{topics.transfer_commands}.saga",
        "BANK_SAGA_ANSWERS_GROUP": f"{topics.step_outcomes}.saga",
        "BANK_SAGA_RELAY_POLL_INTERVAL": "0.1",
        # The killed process's lease runs out this soon, and the restarted one publishes.
        "BANK_SAGA_RELAY_LEASE_DURATION": "1",
    }
    async with running(accounts_app(accounts_settings)) as accounts:
        ids = await open_accounts(accounts, topics, alice="100.00", bob="50.00")

        port = free_port()
        doomed = ServiceProcess(
            "bank_transfers_saga",
            env
            | {
                "BANK_SAGA_HTTP_PORT": str(port),
                "BANK_FAULT_POINTS": CRASH_POINT,
            },
            port,
        )
        await (await doomed.start()).wait_ready()
        transfer_id, _ = await start_transfer(producer, topics, ids["alice"], ids["bob"], "30")
        assert await doomed.wait_exit(within=60) == -signal.SIGKILL

        # The accounts service did withdraw; the saga never committed the debit.
        alice = await history(accounts_settings.dsn, ids["alice"])
        assert [e.type for e in alice] == ["AccountOpened", "MoneyWithdrawn"]
        assert [e.type for e in await history(saga_dsn, transfer_id)] == ["TransferStarted"]

        port = free_port()
        restarted = ServiceProcess(
            "bank_transfers_saga",
            env
            | {
                "BANK_SAGA_HTTP_PORT": str(port),
            },
            port,
        )
        await restarted.start()
        try:
            await restarted.wait_ready()
            types = await finished_transfer(saga_dsn, transfer_id, within=60)
        finally:
            await restarted.stop()

        async def both_sides_settled() -> bool:
            return await balance(accounts_settings, ids["bob"]) == Decimal("80.00")

        await eventually(both_sides_settled, what="Bob's credit")

    assert types == ["TransferStarted", "TransferDebited", "TransferCompleted"]
    alice = await history(accounts_settings.dsn, ids["alice"])
    bob = await history(accounts_settings.dsn, ids["bob"])
    assert [e.type for e in alice] == ["AccountOpened", "MoneyWithdrawn"]
    assert [e.type for e in bob] == ["AccountOpened", "MoneyDeposited"]
    assert await balance(accounts_settings, ids["alice"]) == Decimal("70.00")
    assert await balance(accounts_settings, ids["bob"]) == Decimal("80.00")
