"""The accounts service's language: its commands and its events."""

from __future__ import annotations

from bank_shared.contracts.envelope import Message, register
from bank_shared.ids import StreamName
from bank_shared.money import ZERO, Money
from bank_shared.text import PersonName

# --- commands: intentions, addressed to one account ----------------------------------------


@register
class OpenAccount(Message):
    account_id: StreamName
    # Refused here too, not only by the command API: a name PostgreSQL cannot store would
    # fail the accounts service's write instead of getting an answer.
    owner: PersonName
    initial_balance: Money = ZERO


@register
class DepositMoney(Message):
    account_id: StreamName
    amount: Money
    # Set when a transfer's saga sends the command; the resulting event carries it on.
    transfer_id: StreamName | None = None


@register
class WithdrawMoney(Message):
    account_id: StreamName
    amount: Money
    transfer_id: StreamName | None = None


AccountCommand = OpenAccount | DepositMoney | WithdrawMoney
ACCOUNT_COMMANDS: tuple[type[AccountCommand], ...] = (OpenAccount, DepositMoney, WithdrawMoney)

# --- events: facts, in the past tense; each carries what the read side needs ---------------


@register
class AccountOpened(Message):
    account_id: StreamName
    owner: str
    initial_balance: Money
    balance_after: Money


@register
class MoneyDeposited(Message):
    account_id: StreamName
    amount: Money
    balance_after: Money
    transfer_id: StreamName | None = None


@register
class MoneyWithdrawn(Message):
    account_id: StreamName
    amount: Money
    balance_after: Money
    transfer_id: StreamName | None = None


AccountEvent = AccountOpened | MoneyDeposited | MoneyWithdrawn
ACCOUNT_EVENTS: tuple[type[AccountEvent], ...] = (AccountOpened, MoneyDeposited, MoneyWithdrawn)
