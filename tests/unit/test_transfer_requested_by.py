"""A transfer moves money in the name of who asked for it: `decide` records the sender as
`requested_by`, and every step the saga sends carries them as the envelope's actor."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from faststream.kafka import TestKafkaBroker

from bank_shared.contracts.accounts import DepositMoney, WithdrawMoney
from bank_shared.contracts.actors import BANK_TELLER, Actor
from bank_shared.contracts.envelope import Envelope, read_payload, seal, to_bytes
from bank_shared.contracts.outcomes import Rejection, accepted, answer_to, rejected
from bank_shared.contracts.transfers import StartTransfer, TransferStarted
from bank_transfers_saga.app import create_app as saga_app
from bank_transfers_saga.saga import step_command_id
from bank_transfers_saga.settings import SagaSettings
from bank_transfers_saga.transfer import INITIAL, decide, evolve
from tests.memory import InMemoryStorage

CAROL = Actor(subject="carol", role="customer")


def start(transfer_id: str = "t-1") -> StartTransfer:
    return StartTransfer(
        transfer_id=transfer_id,
        source_account_id="carols",
        target_account_id="daves",
        amount=Decimal("30.00"),
    )


def sent_by(actor: Actor | None, message: StartTransfer) -> Envelope:
    return seal(
        message,
        message_id=uuid.uuid4(),
        correlation_id=uuid.uuid4(),
        causation_id=None,
        occurred_at=datetime.now(UTC),
        actor=actor,
    )


# --- the decider -------------------------------------------------------------------------------


def test_starting_a_transfer_records_who_asked_for_it() -> None:
    decision = decide(start(), INITIAL, CAROL)

    assert not isinstance(decision, Rejection)
    [started] = decision
    assert isinstance(started, TransferStarted)
    assert started.requested_by == CAROL
    assert evolve(INITIAL, started).requested_by == CAROL


def test_a_transfer_started_before_senders_were_recorded_was_the_tellers() -> None:
    """A TransferStarted v2 (no `requested_by`) upcasts to the bank's teller."""
    envelope = Envelope(
        message_id=uuid.uuid4(),
        correlation_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        type="TransferStarted",
        schema_version=2,
        stream_id="t-old",
        stream_version=1,
        payload={
            "transfer_id": "t-old",
            "source_account_id": "a",
            "target_account_id": "b",
            "amount": "5.00",
            "description": None,
        },
    )
    event = read_payload(envelope)

    assert isinstance(event, TransferStarted)
    assert event.requested_by == BANK_TELLER


# --- the saga, with its tables in memory -----------------------------------------------------


def step_of(envelope: Envelope) -> tuple[type, str]:
    """A step's command and the account it addresses."""
    command = read_payload(envelope)
    assert isinstance(command, WithdrawMoney | DepositMoney), command
    return type(command), command.account_id


async def test_every_step_of_a_transfer_is_sent_in_the_name_of_who_asked_for_it() -> None:
    """Withdraw, deposit and, the deposit refused, the refund: all three carry Carol."""
    settings, storage = SagaSettings(), InMemoryStorage()
    topics = settings.topics
    app = saga_app(settings, storage=storage)
    command = sent_by(CAROL, start("t-1"))

    async def answer(step: Envelope, refused: bool) -> None:
        account = read_payload(step)
        assert isinstance(account, WithdrawMoney | DepositMoney)
        outcome = (
            rejected(step, account.account_id, Rejection("account_not_found", "no account"))
            if refused
            else accepted(step, account.account_id, 2, Decimal("70.00"))
        )
        reply = answer_to(step, outcome, datetime.now(UTC))
        await broker.publish(to_bytes(reply), topics.step_outcomes, key=account.account_id.encode())

    async with TestKafkaBroker(app.state.platform.broker) as broker:
        await broker.publish(to_bytes(command), topics.transfer_commands, key=b"t-1")
        [withdraw] = storage.sent_to(topics.account_commands)
        await answer(withdraw, refused=False)
        [_, deposit] = storage.sent_to(topics.account_commands)
        await answer(deposit, refused=True)

    steps = storage.sent_to(topics.account_commands)
    assert [s.message_id for s in steps] == [
        step_command_id("t-1", step) for step in ("withdraw", "deposit", "refund")
    ]
    assert [s.actor for s in steps] == [CAROL, CAROL, CAROL]
    assert [step_of(s) for s in steps] == [
        (WithdrawMoney, "carols"),
        (DepositMoney, "daves"),
        (DepositMoney, "carols"),
    ]
    started = read_payload(storage.events["t-1"][0])
    assert isinstance(started, TransferStarted)
    assert started.requested_by == CAROL


async def test_a_transfer_command_without_a_sender_moves_money_as_the_teller() -> None:
    """Sent before envelopes named a sender: read as the bank's teller, as before."""
    settings, storage = SagaSettings(), InMemoryStorage()
    topics = settings.topics
    app = saga_app(settings, storage=storage)

    async with TestKafkaBroker(app.state.platform.broker) as broker:
        await broker.publish(to_bytes(sent_by(None, start("t-2"))), topics.transfer_commands)

    [withdraw] = storage.sent_to(topics.account_commands)
    assert withdraw.actor == BANK_TELLER
    assert withdraw.sender == BANK_TELLER
