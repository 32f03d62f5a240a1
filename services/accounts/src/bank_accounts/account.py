"""The BankAccount aggregate as a decider: `decide(command, state)` says what happens,
`evolve(state, event)` applies what happened. Pure: no I/O, no clock, no random ids."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from bank_shared.contracts.accounts import (
    ACCOUNT_EVENTS,
    AccountCommand,
    AccountEvent,
    AccountOpened,
    DepositMoney,
    MoneyDeposited,
    MoneyWithdrawn,
    OpenAccount,
    WithdrawMoney,
)
from bank_shared.contracts.outcomes import Rejection
from bank_shared.eventstore.unit_of_work import Aggregate
from bank_shared.money import CEILING, ZERO


@dataclass(frozen=True)
class AccountState:
    """What the rules need to know: does the account exist, and what does it hold."""

    opened: bool = False
    balance: Decimal = ZERO


INITIAL = AccountState()


def decide(command: AccountCommand, state: AccountState) -> list[AccountEvent] | Rejection:
    match command:
        case OpenAccount():
            if state.opened:
                return Rejection(
                    "account_already_exists",
                    f"account {command.account_id} already exists; choose another id",
                )
            if command.initial_balance < ZERO:
                return Rejection("invalid_amount", "the initial balance cannot be negative")
            return [
                AccountOpened(
                    account_id=command.account_id,
                    owner=command.owner,
                    initial_balance=command.initial_balance,
                    balance_after=command.initial_balance,
                )
            ]
        case DepositMoney():
            if not state.opened:
                return not_found(command.account_id)
            if command.amount <= ZERO:
                return Rejection("invalid_amount", "a deposit must be a positive amount")
            if state.balance + command.amount >= CEILING:
                return Rejection(
                    "invalid_amount", f"a balance must stay below {CEILING:,}; deposit less"
                )
            return [
                MoneyDeposited(
                    account_id=command.account_id,
                    amount=command.amount,
                    balance_after=state.balance + command.amount,
                    transfer_id=command.transfer_id,
                    description=command.description,
                )
            ]
        case WithdrawMoney():
            if not state.opened:
                return not_found(command.account_id)
            if command.amount <= ZERO:
                return Rejection("invalid_amount", "a withdrawal must be a positive amount")
            if command.amount > state.balance:
                return Rejection(
                    "insufficient_funds",
                    f"account {command.account_id} holds {state.balance}, "
                    f"less than {command.amount}; withdraw at most the balance",
                )
            return [
                MoneyWithdrawn(
                    account_id=command.account_id,
                    amount=command.amount,
                    balance_after=state.balance - command.amount,
                    transfer_id=command.transfer_id,
                    description=command.description,
                )
            ]


def not_found(account_id: str) -> Rejection:
    return Rejection("account_not_found", f"account {account_id} does not exist; open it first")


def evolve(state: AccountState, event: AccountEvent) -> AccountState:
    match event:
        case AccountOpened():
            return AccountState(opened=True, balance=event.initial_balance)
        case MoneyDeposited():
            return AccountState(opened=True, balance=state.balance + event.amount)
        case MoneyWithdrawn():
            return AccountState(opened=True, balance=state.balance - event.amount)


# What the event store needs to know of it; an accepted command's answer carries the balance.
BANK_ACCOUNT = Aggregate(
    initial=INITIAL,
    evolve=evolve,
    events=ACCOUNT_EVENTS,
    answer_details=lambda state: {"balance": state.balance},
)
