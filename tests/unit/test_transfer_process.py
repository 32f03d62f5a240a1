"""The Transfer aggregate and the MoneyTransfer process manager, without I/O."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

import pytest

from bank_shared.contracts.accounts import DepositMoney, WithdrawMoney
from bank_shared.contracts.actors import BANK_TELLER
from bank_shared.contracts.outcomes import Rejection
from bank_shared.contracts.transfers import (
    StartTransfer,
    TransferCompleted,
    TransferCreditRefused,
    TransferDebited,
    TransferEvent,
    TransferFailed,
    TransferStarted,
)
from bank_transfers_saga.saga import Step, next_steps, on_step_answer
from bank_transfers_saga.transfer import INITIAL, TransferState, decide, evolve

STARTED = TransferStarted(
    transfer_id="t1",
    source_account_id="alice",
    target_account_id="bob",
    amount="30.00",
    description=None,
    requested_by=BANK_TELLER,
)


def fold(events: Iterable[TransferEvent], state: TransferState = INITIAL) -> TransferState:
    for event in events:
        state = evolve(state, event)
    return state


def given(*events: TransferEvent) -> TransferState:
    return fold(events)


def start(amount: str = "30.00", transfer_id: str = "t1") -> StartTransfer:
    return StartTransfer(
        transfer_id=transfer_id, source_account_id="alice", target_account_id="bob", amount=amount
    )


def test_starting_a_new_transfer_records_it_and_withdraws_from_the_source() -> None:
    decision = decide(start(), INITIAL, BANK_TELLER)
    assert decision == [STARTED]
    state = given(STARTED)
    assert next_steps(state, STARTED) == [
        ("withdraw", WithdrawMoney(account_id="alice", amount="30.00", transfer_id="t1"))
    ]


def test_starting_an_existing_transfer_is_refused() -> None:
    decision = decide(start(), given(STARTED), BANK_TELLER)
    assert isinstance(decision, Rejection)
    assert decision.code == "transfer_already_exists"


def test_a_transfer_of_nothing_is_refused() -> None:
    decision = decide(start("0"), INITIAL, BANK_TELLER)
    assert isinstance(decision, Rejection)
    assert decision.code == "invalid_amount"


def test_a_transfer_to_the_same_account_is_refused() -> None:
    command = StartTransfer(
        transfer_id="t", source_account_id="a", target_account_id="a", amount="1"
    )
    decision = decide(command, INITIAL, BANK_TELLER)
    assert isinstance(decision, Rejection)
    assert decision.code == "same_account"


def test_an_accepted_withdrawal_debits_the_transfer_and_deposits_to_the_target() -> None:
    state = given(STARTED)
    events = on_step_answer(state, "withdraw", accepted=True, code=None)
    assert events == [TransferDebited(transfer_id="t1", source_account_id="alice", amount="30")]
    after = fold(events, state)
    assert after.status == "debited"
    assert next_steps(after, events[0]) == [
        ("deposit", DepositMoney(account_id="bob", amount="30.00", transfer_id="t1"))
    ]


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("insufficient_funds", "insufficient_funds"),
        ("account_not_found", "source_account_not_found"),
    ],
)
def test_a_refused_withdrawal_fails_the_transfer_without_refund(code: str, reason: str) -> None:
    events = on_step_answer(given(STARTED), "withdraw", accepted=False, code=code)
    assert events == [TransferFailed(transfer_id="t1", reason=reason, refunded=False)]
    assert next_steps(fold(events, given(STARTED)), events[0]) == []


def test_an_accepted_deposit_completes_the_transfer() -> None:
    state = given(
        STARTED, TransferDebited(transfer_id="t1", source_account_id="alice", amount="30")
    )
    events = on_step_answer(state, "deposit", accepted=True, code=None)
    assert events == [TransferCompleted(transfer_id="t1")]
    assert fold(events, state).finished


def test_a_refused_deposit_refunds_the_source_then_fails_as_refunded() -> None:
    debited = given(
        STARTED, TransferDebited(transfer_id="t1", source_account_id="alice", amount="30")
    )
    refused = on_step_answer(debited, "deposit", accepted=False, code="account_not_found")
    assert refused == [TransferCreditRefused(transfer_id="t1", reason="target_account_not_found")]
    refunding = fold(refused, debited)
    assert next_steps(refunding, refused[0]) == [
        ("refund", DepositMoney(account_id="alice", amount="30.00", transfer_id="t1"))
    ]
    done = on_step_answer(refunding, "refund", accepted=True, code=None)
    assert done == [
        TransferFailed(transfer_id="t1", reason="target_account_not_found", refunded=True)
    ]
    assert fold(done, refunding).status == "failed"


@pytest.mark.parametrize(
    ("history", "late_step"),
    [
        (
            (STARTED, TransferDebited(transfer_id="t1", source_account_id="alice", amount="30")),
            "withdraw",
        ),
        ((STARTED, TransferFailed(transfer_id="t1", reason="insufficient_funds")), "withdraw"),
        (
            (
                STARTED,
                TransferDebited(transfer_id="t1", source_account_id="alice", amount="30"),
                TransferCompleted(transfer_id="t1"),
            ),
            "deposit",
        ),
        ((), "withdraw"),
    ],
)
def test_a_late_or_duplicate_answer_changes_nothing(
    history: tuple[TransferEvent, ...], late_step: Step
) -> None:
    state = given(*history)
    for accepted in (True, False):
        assert on_step_answer(state, late_step, accepted=accepted, code="x") == []


def test_the_state_remembers_the_amount_and_both_accounts() -> None:
    state = given(STARTED)
    assert (state.source_account_id, state.target_account_id, state.amount) == (
        "alice",
        "bob",
        Decimal("30.00"),
    )
