"""Each service's subscribers under FastStream's test broker, over event stores in memory: a
command published to a service is decided, its events are recorded, and it is answered."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from faststream.kafka import TestKafkaBroker

from bank_accounts.app import create_app as accounts_app
from bank_accounts.settings import AccountsSettings
from bank_shared.contracts.accounts import DepositMoney, OpenAccount, WithdrawMoney
from bank_shared.contracts.actors import TELLER
from bank_shared.contracts.envelope import Envelope, read_payload, to_bytes
from bank_shared.contracts.outcomes import CommandOutcome
from bank_shared.contracts.transfers import StartTransfer
from bank_transfers_saga.app import create_app as saga_app
from bank_transfers_saga.saga import step_command_id
from bank_transfers_saga.settings import SagaSettings
from tests.memory import InMemoryStorage
from tests.support import envelope_for


def outcomes(sent: list[Envelope]) -> list[CommandOutcome]:
    return [CommandOutcome.model_validate(envelope.payload) for envelope in sent]


async def test_the_accounts_service_decides_records_and_answers_each_command() -> None:
    settings, storage = AccountsSettings(), InMemoryStorage()
    topics = settings.topics
    app = accounts_app(settings, storage=storage)
    commands = [
        envelope_for(
            OpenAccount(account_id="alice", owner="Alice", initial_balance="10", owned_by=TELLER)
        ),
        envelope_for(DepositMoney(account_id="alice", amount="5")),
        envelope_for(WithdrawMoney(account_id="alice", amount="50")),
    ]
    async with TestKafkaBroker(app.state.platform.broker) as broker:
        for command in commands:
            await broker.publish(to_bytes(command), topics.account_commands, key=b"alice")

    assert [e.type for e in storage.events["alice"]] == ["AccountOpened", "MoneyDeposited"]
    answers = outcomes(storage.sent_to(topics.command_outcomes))
    assert [(a.status, a.version, a.balance, a.code) for a in answers] == [
        ("accepted", 1, Decimal("10.00"), None),
        ("accepted", 2, Decimal("15.00"), None),
        ("rejected", 2, None, "insufficient_funds"),
    ]
    assert [a.command_id for a in answers] == [c.message_id for c in commands]
    assert storage.sent_to(topics.account_events) == storage.events["alice"]


async def test_the_accounts_service_answers_a_command_it_cannot_read_as_unprocessable() -> None:
    settings, storage = AccountsSettings(), InMemoryStorage()
    topics = settings.topics
    app = accounts_app(settings, storage=storage)
    broker = app.state.platform.broker
    dead: list[object] = []

    @broker.subscriber(topics.dead_letters)  # type: ignore[untyped-decorator]
    async def on_dead_letter(body: Any) -> None:  # bytes, or the JSON FastStream read in them
        dead.append(body)

    command = envelope_for(DepositMoney(account_id="bob", amount="1"))
    unreadable = to_bytes(command.model_copy(update={"payload": {"account_id": "bob"}}))
    async with TestKafkaBroker(broker) as test_broker:
        for _ in range(2):  # delivered twice: answered once
            await test_broker.publish(unreadable, topics.account_commands, key=b"bob")
        await test_broker.publish(b"not even json", topics.account_commands, key=b"bob")

    assert storage.events == {}
    answers = outcomes(storage.sent_to(topics.command_outcomes))
    assert [(a.command_id, a.status, a.code) for a in answers] == [
        (command.message_id, "rejected", "unprocessable_command")
    ]
    assert command.message_id in storage.processed
    assert len(dead) == 3


async def test_the_saga_starts_a_transfer_and_sends_its_first_step() -> None:
    settings, storage = SagaSettings(), InMemoryStorage()
    topics = settings.topics
    app = saga_app(settings, storage=storage)
    start = envelope_for(
        StartTransfer(
            transfer_id="t-1", source_account_id="alice", target_account_id="bob", amount="30"
        )
    )
    async with TestKafkaBroker(app.state.platform.broker) as broker:
        await broker.publish(to_bytes(start), topics.transfer_commands, key=b"t-1")

    assert [e.type for e in storage.events["t-1"]] == ["TransferStarted"]
    [answer] = outcomes(storage.sent_to(topics.command_outcomes))
    assert (answer.command_id, answer.status, answer.version) == (start.message_id, "accepted", 1)
    [step] = storage.sent_to(topics.account_commands)
    assert step.message_id == step_command_id("t-1", "withdraw")
    assert (step.reply_to, step.correlation_id) == (topics.step_outcomes, start.correlation_id)
    withdraw = read_payload(step)
    assert isinstance(withdraw, WithdrawMoney)
    assert (withdraw.account_id, withdraw.amount, withdraw.transfer_id) == (
        "alice",
        Decimal("30.00"),
        "t-1",
    )
