"""Who may move an account's money: given its events, when a customer's or a teller's command
comes, then events, `teller_only`, or the very refusal an account that does not exist gets."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal

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
from bank_shared.contracts.actors import BANK_TELLER, TELLER, Actor
from bank_shared.contracts.envelope import Envelope, read_payload
from bank_shared.contracts.outcomes import Rejection

ACCOUNT = "acc-1"
TRANSFER = "transfer-1"
ALICE = Actor(subject="alice", role="customer")
BOB = Actor(subject="bob", role="customer")


def given(*events: AccountEvent) -> AccountState:
    state = INITIAL
    for event in events:
        state = evolve(state, event)
    return state


def opened(owned_by: str = "alice", balance: str = "100.00") -> AccountOpened:
    amount = Decimal(balance)
    return AccountOpened(
        account_id=ACCOUNT,
        owner="Alice",
        owned_by=owned_by,
        initial_balance=amount,
        balance_after=amount,
    )


def deposit(amount: str = "10.00", transfer_id: str | None = None) -> DepositMoney:
    return DepositMoney(account_id=ACCOUNT, amount=Decimal(amount), transfer_id=transfer_id)


def withdraw(amount: str = "10.00", transfer_id: str | None = None) -> WithdrawMoney:
    return WithdrawMoney(account_id=ACCOUNT, amount=Decimal(amount), transfer_id=transfer_id)


def open_for(owned_by: str, balance: str = "0") -> OpenAccount:
    return OpenAccount(
        account_id=ACCOUNT, owner="Someone", owned_by=owned_by, initial_balance=Decimal(balance)
    )


def accepted(result: list[AccountEvent] | Rejection) -> list[AccountEvent]:
    assert not isinstance(result, Rejection), f"expected events, got {result}"
    return result


def moves(events: list[AccountEvent]) -> list[tuple[type, str | None, Decimal]]:
    """What each event did to the money: its kind, its transfer and the balance after."""
    found: list[tuple[type, str | None, Decimal]] = []
    for event in events:
        assert isinstance(event, MoneyDeposited | MoneyWithdrawn), event
        found.append((type(event), event.transfer_id, event.balance_after))
    return found


def rejected(result: list[AccountEvent] | Rejection) -> Rejection:
    assert isinstance(result, Rejection), f"expected a rejection, got {result}"
    return result


# --- the owner ---------------------------------------------------------------------------------


def test_the_owner_withdraws_from_their_account() -> None:
    events = accepted(decide(withdraw("30.00"), given(opened("alice")), ALICE))

    assert events == [
        MoneyWithdrawn(
            account_id=ACCOUNT,
            amount=Decimal("30.00"),
            balance_after=Decimal("70.00"),
            description=None,
        )
    ]


def test_the_owners_transfer_debits_their_account() -> None:
    events = accepted(decide(withdraw("30.00", TRANSFER), given(opened("alice")), ALICE))

    assert moves(events) == [(MoneyWithdrawn, TRANSFER, Decimal("70.00"))]


def test_the_owner_may_not_deposit_cash_into_their_own_account() -> None:
    rejection = rejected(decide(deposit("10.00"), given(opened("alice")), ALICE))

    assert rejection.code == "teller_only"
    assert "teller" in rejection.reason


def test_a_refund_or_credit_of_a_transfer_lands_in_the_owners_account() -> None:
    events = accepted(decide(deposit("5.00", TRANSFER), given(opened("alice")), ALICE))

    assert moves(events) == [(MoneyDeposited, TRANSFER, Decimal("105.00"))]


# --- another customer: the account is not there for them ------------------------------------

NOT_THEIRS = [
    withdraw("10.00"),
    withdraw("1000.00"),  # more than the balance: still not found, never insufficient_funds
    withdraw("0"),  # an invalid amount: still not found, never invalid_amount
    withdraw("10.00", TRANSFER),  # a transfer's debit, in the name of who asked for it
    deposit("10.00"),  # cash
    deposit("0"),
]
NOT_THEIRS_IDS = [
    "withdrawal",
    "overdraft",
    "zero withdrawal",
    "transfer debit",
    "cash deposit",
    "zero cash deposit",
]


@pytest.mark.parametrize("command", NOT_THEIRS, ids=NOT_THEIRS_IDS)
def test_another_customers_command_is_refused_exactly_as_on_no_account(
    command: AccountCommand,
) -> None:
    """Word for word: from the answer alone, Bob cannot tell Alice's account exists."""
    refused = rejected(decide(command, given(opened("alice")), BOB))
    missing_for_bob = rejected(decide(command, given(), BOB))
    missing_for_teller = rejected(decide(command, given(), BANK_TELLER))

    assert refused.code == "account_not_found"
    assert refused == missing_for_bob == missing_for_teller


@pytest.mark.parametrize("command", NOT_THEIRS, ids=NOT_THEIRS_IDS)
def test_the_refusal_does_not_depend_on_what_the_account_holds(command: AccountCommand) -> None:
    poor = rejected(decide(command, given(opened("alice", "0.00")), BOB))
    rich = rejected(decide(command, given(opened("alice", "5000.00")), BOB))

    assert poor == rich


def test_a_transfers_credit_into_another_customers_account_is_accepted() -> None:
    """Bob's transfer pays Alice: the saga's deposit goes out in Bob's name."""
    events = accepted(decide(deposit("25.00", TRANSFER), given(opened("alice")), BOB))

    assert moves(events) == [(MoneyDeposited, TRANSFER, Decimal("125.00"))]


def test_a_transfers_credit_into_an_account_that_does_not_exist_is_not_found() -> None:
    rejection = rejected(decide(deposit("25.00", TRANSFER), given(), BOB))

    assert rejection.code == "account_not_found"


# --- tellers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "balance_after"),
    [
        (withdraw("30.00"), "70.00"),
        (withdraw("30.00", TRANSFER), "70.00"),
        (deposit("30.00"), "130.00"),
        (deposit("30.00", TRANSFER), "130.00"),
    ],
    ids=["withdrawal", "transfer debit", "cash deposit", "transfer credit"],
)
def test_a_teller_acts_on_a_customers_account(command: AccountCommand, balance_after: str) -> None:
    events = accepted(decide(command, given(opened("alice")), BANK_TELLER))

    assert [e.balance_after for e in events] == [Decimal(balance_after)]


def test_a_teller_opens_an_account_for_a_customer_with_money_in_it() -> None:
    events = accepted(decide(open_for("alice", "50.00"), given(), BANK_TELLER))

    assert events == [
        AccountOpened(
            account_id=ACCOUNT,
            owner="Someone",
            owned_by="alice",
            initial_balance=Decimal("50.00"),
            balance_after=Decimal("50.00"),
        )
    ]
    assert given(*events).owned_by == "alice"


def test_another_teller_acts_on_the_account_too() -> None:
    """The role decides, not the name: any teller, not only the bank's own."""
    clerk = Actor(subject="clerk-7", role="teller")

    assert accepted(decide(withdraw("1.00"), given(opened("alice")), clerk))
    assert accepted(decide(deposit("1.00"), given(opened("alice")), clerk))


# --- opening ---------------------------------------------------------------------------------


def test_a_customer_opens_an_empty_account_for_themselves() -> None:
    events = accepted(decide(open_for("alice"), given(), ALICE))

    assert [type(e) for e in events] == [AccountOpened]
    assert given(*events) == AccountState(opened=True, owned_by="alice", balance=Decimal("0.00"))


@pytest.mark.parametrize(
    "command",
    [open_for("bob"), open_for(TELLER), open_for("alice", "10.00"), open_for("bob", "10.00")],
    ids=["for someone else", "for the teller", "with money", "for someone else with money"],
)
def test_a_customer_may_open_only_empty_accounts_of_their_own(command: OpenAccount) -> None:
    rejection = rejected(decide(command, given(), ALICE))

    assert rejection.code == "teller_only"
    assert "teller" in rejection.reason


def test_a_customers_refused_opening_does_not_tell_whether_the_id_is_taken() -> None:
    """Refused as teller_only before the id is looked at: not `account_already_exists`."""
    taken = rejected(decide(open_for("bob"), given(opened("bob")), ALICE))
    free = rejected(decide(open_for("bob"), given(), ALICE))

    assert taken == free
    assert taken.code == "teller_only"


# --- accounts opened before accounts had owners ----------------------------------------------


def stored_v1_opening(balance: str = "40.00") -> AccountOpened:
    """An AccountOpened as written before owners: schema version 1, no `owned_by`."""
    envelope = Envelope(
        message_id=uuid.uuid4(),
        correlation_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        type="AccountOpened",
        schema_version=1,
        stream_id=ACCOUNT,
        stream_version=1,
        payload={
            "account_id": ACCOUNT,
            "owner": "Old Customer",
            "initial_balance": balance,
            "balance_after": balance,
        },
    )
    event = read_payload(envelope)
    assert isinstance(event, AccountOpened)
    return event


def test_an_account_from_before_owners_is_owned_by_the_teller() -> None:
    event = stored_v1_opening()

    assert event.owned_by == TELLER
    assert given(event).owned_by == TELLER


def test_an_account_from_before_owners_is_the_tellers_to_move_and_no_customers() -> None:
    state = given(stored_v1_opening("40.00"))

    assert [e.balance_after for e in accepted(decide(withdraw("15.00"), state, BANK_TELLER))] == [
        Decimal("25.00")
    ]
    refused = rejected(decide(withdraw("15.00"), state, ALICE))
    assert refused == rejected(decide(withdraw("15.00"), given(), ALICE))


# --- every decision in one place -------------------------------------------------------------


def outcome(command: AccountCommand, history: Iterable[AccountEvent], sender: Actor) -> str:
    decision = decide(command, given(*history), sender)
    return decision.code if isinstance(decision, Rejection) else "accepted"


def test_the_permission_matrix() -> None:
    """Alice's account, as Alice, Bob and the teller see it."""
    history = [opened("alice")]
    commands: dict[str, AccountCommand] = {
        "withdrawal": withdraw(),
        "transfer debit": withdraw(transfer_id=TRANSFER),
        "cash deposit": deposit(),
        "transfer credit": deposit(transfer_id=TRANSFER),
    }
    matrix = {
        (name, sender.subject): outcome(command, history, sender)
        for name, command in commands.items()
        for sender in (ALICE, BOB, BANK_TELLER)
    }

    assert matrix == {
        ("withdrawal", "alice"): "accepted",
        ("withdrawal", "bob"): "account_not_found",
        ("withdrawal", TELLER): "accepted",
        ("transfer debit", "alice"): "accepted",
        ("transfer debit", "bob"): "account_not_found",
        ("transfer debit", TELLER): "accepted",
        ("cash deposit", "alice"): "teller_only",
        ("cash deposit", "bob"): "account_not_found",
        ("cash deposit", TELLER): "accepted",
        ("transfer credit", "alice"): "accepted",
        ("transfer credit", "bob"): "accepted",
        ("transfer credit", TELLER): "accepted",
    }
