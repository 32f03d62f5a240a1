"""The BankAccount decider: given past events, when a command comes, then events or a rejection."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import FrozenInstanceError, replace
from decimal import Decimal
from typing import get_args

import pytest

from bank_accounts.account import INITIAL, AccountState, decide, evolve
from bank_shared.contracts.accounts import (
    AccountCommand,
    AccountEvent,
    AccountOpened,
    DepositMoney,
    MoneyDeposited,
    MoneyWithdrawn,
    OpenAccount,
    WithdrawMoney,
)
from bank_shared.contracts.actors import BANK_TELLER, TELLER
from bank_shared.contracts.outcomes import Rejection, RejectionCode

ACCOUNT = "alice"


def fold(events: Iterable[AccountEvent], state: AccountState = INITIAL) -> AccountState:
    for event in events:
        state = evolve(state, event)
    return state


def given(*events: AccountEvent) -> AccountState:
    """The state an account is in after these events."""
    return fold(events)


def opened(balance: str = "0.00", account_id: str = ACCOUNT) -> AccountOpened:
    amount = Decimal(balance)
    return AccountOpened(
        account_id=account_id,
        owner="Alice",
        owned_by=TELLER,
        initial_balance=amount,
        balance_after=amount,
    )


def deposited(amount: str, balance_after: str) -> MoneyDeposited:
    return MoneyDeposited(
        account_id=ACCOUNT,
        amount=Decimal(amount),
        balance_after=Decimal(balance_after),
        description=None,
    )


def withdrawn(amount: str, balance_after: str) -> MoneyWithdrawn:
    return MoneyWithdrawn(
        account_id=ACCOUNT,
        amount=Decimal(amount),
        balance_after=Decimal(balance_after),
        description=None,
    )


def deposit(amount: str, transfer_id: str | None = None) -> DepositMoney:
    return DepositMoney(account_id=ACCOUNT, amount=Decimal(amount), transfer_id=transfer_id)


def withdraw(amount: str, transfer_id: str | None = None) -> WithdrawMoney:
    return WithdrawMoney(account_id=ACCOUNT, amount=Decimal(amount), transfer_id=transfer_id)


def accepted(result: list[AccountEvent] | Rejection) -> list[AccountEvent]:
    assert not isinstance(result, Rejection), f"expected events, got {result}"
    return result


def rejected(result: list[AccountEvent] | Rejection) -> Rejection:
    assert isinstance(result, Rejection), f"expected a rejection, got {result}"
    return result


# --- opening -------------------------------------------------------------------------------


def test_opening_a_new_account_carries_the_initial_balance_into_balance_after() -> None:
    command = OpenAccount(
        account_id=ACCOUNT, owner="Alice", initial_balance=Decimal("25.50"), owned_by=TELLER
    )

    events = accepted(decide(command, given(), BANK_TELLER))

    assert events == [
        AccountOpened(
            account_id=ACCOUNT,
            owner="Alice",
            owned_by=TELLER,
            initial_balance=Decimal("25.50"),
            balance_after=Decimal("25.50"),
        )
    ]


def test_opening_without_an_initial_balance_starts_at_zero() -> None:
    events = accepted(
        decide(
            OpenAccount(account_id=ACCOUNT, owner="Alice", owned_by=TELLER), given(), BANK_TELLER
        )
    )

    assert len(events) == 1
    event = events[0]
    assert isinstance(event, AccountOpened)
    assert event.initial_balance == Decimal("0.00")
    assert event.balance_after == Decimal("0.00")


def test_opening_an_account_that_already_exists_is_rejected() -> None:
    command = OpenAccount(account_id=ACCOUNT, owner="Someone else", owned_by=TELLER)

    rejection = rejected(decide(command, given(opened("10.00")), BANK_TELLER))

    assert rejection.code == "account_already_exists"
    assert ACCOUNT in rejection.reason


def test_opening_with_a_negative_initial_balance_is_rejected() -> None:
    command = OpenAccount(
        account_id=ACCOUNT, owner="Alice", initial_balance=Decimal("-0.01"), owned_by=TELLER
    )

    rejection = rejected(decide(command, given(), BANK_TELLER))

    assert rejection.code == "invalid_amount"


# --- commands on an account that does not exist -------------------------------------------


@pytest.mark.parametrize(
    "command", [deposit("10.00"), withdraw("10.00")], ids=["deposit", "withdraw"]
)
def test_money_commands_on_an_account_that_does_not_exist_are_rejected(
    command: AccountCommand,
) -> None:
    rejection = rejected(decide(command, given(), BANK_TELLER))

    assert rejection.code == "account_not_found"
    assert ACCOUNT in rejection.reason


# --- amounts -------------------------------------------------------------------------------


@pytest.mark.parametrize("amount", ["0", "0.00", "-0.01", "-10"])
def test_a_deposit_that_is_not_positive_is_rejected(amount: str) -> None:
    rejection = rejected(decide(deposit(amount), given(opened("100.00")), BANK_TELLER))

    assert rejection.code == "invalid_amount"


@pytest.mark.parametrize("amount", ["0", "0.00", "-0.01", "-10"])
def test_a_withdrawal_that_is_not_positive_is_rejected(amount: str) -> None:
    rejection = rejected(decide(withdraw(amount), given(opened("100.00")), BANK_TELLER))

    assert rejection.code == "invalid_amount"


# --- deposits and withdrawals --------------------------------------------------------------


def test_a_deposit_adds_the_amount_to_the_balance() -> None:
    events = accepted(decide(deposit("0.75"), given(opened("10.50")), BANK_TELLER))

    assert events == [deposited("0.75", "11.25")]


def test_a_withdrawal_subtracts_the_amount_from_the_balance() -> None:
    events = accepted(decide(withdraw("0.75"), given(opened("10.50")), BANK_TELLER))

    assert events == [withdrawn("0.75", "9.75")]


def test_withdrawing_exactly_the_balance_is_allowed_and_leaves_zero() -> None:
    state = given(opened("20.00"), deposited("10.00", "30.00"))

    events = accepted(decide(withdraw("30.00"), state, BANK_TELLER))

    assert len(events) == 1
    event = events[0]
    assert isinstance(event, MoneyWithdrawn)
    assert event.balance_after == Decimal("0.00")


def test_withdrawing_more_than_the_balance_is_rejected_naming_the_balance() -> None:
    state = given(opened("20.00"), deposited("10.00", "30.00"))

    rejection = rejected(decide(withdraw("30.01"), state, BANK_TELLER))

    assert rejection.code == "insufficient_funds"
    assert "30.00" in rejection.reason


def test_withdrawing_from_an_emptied_account_is_rejected() -> None:
    state = given(opened("5.00"), withdrawn("5.00", "0.00"))

    rejection = rejected(decide(withdraw("0.01"), state, BANK_TELLER))

    assert rejection.code == "insufficient_funds"


@pytest.mark.parametrize("make", [deposit, withdraw], ids=["deposit", "withdraw"])
def test_the_transfer_id_is_carried_from_the_command_into_the_event(
    make: Callable[[str, str | None], AccountCommand],
) -> None:
    events = accepted(decide(make("1.00", "transfer-42"), given(opened("10.00")), BANK_TELLER))

    assert len(events) == 1
    event = events[0]
    assert isinstance(event, MoneyDeposited | MoneyWithdrawn)
    assert event.transfer_id == "transfer-42"


@pytest.mark.parametrize(
    "command", [deposit("1.00"), withdraw("1.00")], ids=["deposit", "withdraw"]
)
def test_a_command_without_a_transfer_id_gives_an_event_without_one(
    command: AccountCommand,
) -> None:
    events = accepted(decide(command, given(opened("10.00")), BANK_TELLER))

    assert len(events) == 1
    event = events[0]
    assert isinstance(event, MoneyDeposited | MoneyWithdrawn)
    assert event.transfer_id is None


# --- fold ----------------------------------------------------------------------------------


def test_fold_of_no_events_is_an_account_that_does_not_exist() -> None:
    assert given() == INITIAL
    assert given().opened is False
    assert given().balance == Decimal("0.00")


def test_fold_of_a_history_gives_the_resulting_balance() -> None:
    state = given(
        opened("100.00"),
        deposited("50.25", "150.25"),
        withdrawn("30.10", "120.15"),
        deposited("0.01", "120.16"),
    )

    assert state == AccountState(opened=True, owned_by=TELLER, balance=Decimal("120.16"))


def test_fold_continues_from_a_given_state() -> None:
    start = given(opened("10.00"))

    state = fold([deposited("5.00", "15.00")], start)

    assert state == AccountState(opened=True, owned_by=TELLER, balance=Decimal("15.00"))


def test_balance_after_of_accepted_events_matches_the_folded_balance() -> None:
    history: list[AccountEvent] = []
    commands: list[AccountCommand] = [
        OpenAccount(
            account_id=ACCOUNT, owner="Alice", initial_balance=Decimal("3.00"), owned_by=TELLER
        ),
        deposit("7.50"),
        withdraw("2.25"),
        withdraw("8.25"),
    ]
    for command in commands:
        events = accepted(decide(command, fold(history), BANK_TELLER))
        history.extend(events)
        for event in events:
            assert event.balance_after == fold(history).balance

    assert fold(history) == AccountState(opened=True, owned_by=TELLER, balance=Decimal("0.00"))


# --- purity --------------------------------------------------------------------------------


def test_the_state_is_frozen() -> None:
    state = given(opened("10.00"))

    with pytest.raises(FrozenInstanceError):
        state.balance = Decimal("1000000.00")  # type: ignore[misc]


@pytest.mark.parametrize(
    "command",
    [
        deposit("5.00"),
        withdraw("5.00"),
        withdraw("500.00"),
        OpenAccount(account_id=ACCOUNT, owner="A", owned_by=TELLER),
    ],
    ids=["deposit", "withdraw", "overdraw", "reopen"],
)
def test_decide_leaves_the_state_and_command_unchanged(command: AccountCommand) -> None:
    state = given(opened("10.00"))
    state_before = replace(state)
    command_before = command.model_copy(deep=True)

    decide(command, state, BANK_TELLER)

    assert state == state_before
    assert command == command_before


@pytest.mark.parametrize(
    "command",
    [
        deposit("5.00"),
        withdraw("5.00"),
        withdraw("500.00"),
        OpenAccount(account_id=ACCOUNT, owner="A", owned_by=TELLER),
    ],
    ids=["deposit", "withdraw", "overdraw", "reopen"],
)
def test_decide_is_deterministic(command: AccountCommand) -> None:
    state = given(opened("10.00"))

    assert decide(command, state, BANK_TELLER) == decide(command, state, BANK_TELLER)


# --- rejections speak to people ------------------------------------------------------------

REJECTIONS: list[tuple[AccountCommand, tuple[AccountEvent, ...]]] = [
    (OpenAccount(account_id=ACCOUNT, owner="A", owned_by=TELLER), (opened(),)),
    (
        OpenAccount(
            account_id=ACCOUNT, owner="A", initial_balance=Decimal("-1.00"), owned_by=TELLER
        ),
        (),
    ),
    (deposit("1.00"), ()),
    (withdraw("1.00"), ()),
    (deposit("0.00"), (opened(),)),
    (withdraw("-1.00"), (opened(),)),
    (withdraw("1.00"), (opened(),)),
]


@pytest.mark.parametrize(("command", "history"), REJECTIONS)
def test_every_rejection_has_a_known_code_and_a_sentence_for_people(
    command: AccountCommand, history: tuple[AccountEvent, ...]
) -> None:
    rejection = rejected(decide(command, given(*history), BANK_TELLER))

    assert rejection.code in get_args(RejectionCode)
    assert rejection.reason.strip()
    assert len(rejection.reason.split()) >= 3


def test_every_events_balance_after_is_the_balance_its_history_folds_to() -> None:
    """The read side shows `balance_after`; the write side folds `evolve`: they must agree for
    every prefix of a long history that uses every event type."""
    rng = random.Random(20261126)
    state = INITIAL
    history: list[AccountEvent] = []
    commands: list[AccountCommand] = [OpenAccount(account_id=ACCOUNT, owner="A", owned_by=TELLER)]
    commands += [
        (deposit if rng.random() < 0.6 else withdraw)(f"{rng.randint(1, 5000) / 100:.2f}")
        for _ in range(300)
    ]
    for command in commands:
        decision = decide(command, state, BANK_TELLER)
        if isinstance(decision, Rejection):
            continue
        for event in decision:
            history.append(event)
            state = evolve(state, event)
            assert event.balance_after == fold(history).balance == state.balance
    assert len(history) > 100


def test_a_deposit_that_would_reach_the_balance_ceiling_is_refused_not_a_crash() -> None:
    state = given(opened("999999999999990.00"))
    decision = decide(deposit("10.00"), state, BANK_TELLER)
    assert isinstance(decision, Rejection)
    assert decision.code == "invalid_amount"
    assert "deposit less" in decision.reason
    assert decide(deposit("9.99"), state, BANK_TELLER) == [deposited("9.99", "999999999999999.99")]
