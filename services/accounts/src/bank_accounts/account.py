"""The BankAccount aggregate as a decider: `decide(command, state, sender)` says what happens,
`evolve(state, event)` applies what happened. Pure: no I/O, no clock, no random ids.

Who may do what is decided here too, where the balance is known: customers act on the
accounts they own, tellers on every account; only tellers bring cash in (a deposit that is not
a transfer's, an initial balance) or open accounts for someone else. A customer's command on
an account they do not own is refused as `account_not_found`, like one on no account at all,
so account ids cannot be probed."""

from __future__ import annotations

from dataclasses import dataclass, replace
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
from bank_shared.contracts.actors import Actor
from bank_shared.contracts.outcomes import Rejection
from bank_shared.eventstore.unit_of_work import Aggregate
from bank_shared.money import CEILING, ZERO


@dataclass(frozen=True)
class AccountState:
    """What the rules need to know: does the account exist, whose is it, what does it hold."""

    opened: bool = False
    owned_by: str = ""
    balance: Decimal = ZERO

    def visible_to(self, sender: Actor) -> bool:
        return self.opened and sender.may_act_on(self.owned_by)


INITIAL = AccountState()


def decide(
    command: AccountCommand, state: AccountState, sender: Actor
) -> list[AccountEvent] | Rejection:
    match command:
        case OpenAccount():
            if not sender.may_act_on(command.owned_by):
                return teller_only("open an account for someone else; leave owned_by out")
            if command.initial_balance > ZERO and not sender.is_teller:
                return teller_only(
                    "open an account with money in it; open it empty and transfer money in"
                )
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
                    owned_by=command.owned_by,
                    initial_balance=command.initial_balance,
                    balance_after=command.initial_balance,
                )
            ]
        case DepositMoney():
            # A transfer's credit or refund lands in any open account; cash is a teller's.
            cash = command.transfer_id is None
            if not state.opened or (cash and not state.visible_to(sender)):
                return not_found(command.account_id)
            if cash and not sender.is_teller:
                return teller_only("deposit cash; transfer money in from another account")
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
            if not state.visible_to(sender):
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
    return Rejection(
        "account_not_found",
        f"you have no account {account_id}; check the id (GET /accounts lists yours)",
    )


def teller_only(what: str) -> Rejection:
    return Rejection("teller_only", f"only a teller may {what}")


def evolve(state: AccountState, event: AccountEvent) -> AccountState:
    match event:
        case AccountOpened():
            return AccountState(opened=True, owned_by=event.owned_by, balance=event.initial_balance)
        case MoneyDeposited():
            return replace(state, balance=state.balance + event.amount)
        case MoneyWithdrawn():
            return replace(state, balance=state.balance - event.amount)


# What the event store needs to know of it; an accepted command's answer carries the balance.
BANK_ACCOUNT = Aggregate(
    initial=INITIAL,
    evolve=evolve,
    events=ACCOUNT_EVENTS,
    answer_details=lambda state: {"balance": state.balance},
)
