"""The accounts service's language: its commands and its events."""

from __future__ import annotations

from typing import ClassVar

from bank_shared.contracts.actors import TELLER, Subject
from bank_shared.contracts.envelope import Message, register
from bank_shared.contracts.upcasting import Payload, upcaster
from bank_shared.ids import StreamName
from bank_shared.money import ZERO, Money
from bank_shared.text import Description, PersonName

# --- commands: intentions, addressed to one account ----------------------------------------


@register
class OpenAccount(Message):
    SCHEMA_VERSION: ClassVar[int] = 2  # v2: owned_by

    account_id: StreamName
    # Refused here too, not only by the command API: a name PostgreSQL cannot store would
    # fail the accounts service's write instead of getting an answer.
    owner: PersonName
    initial_balance: Money = ZERO
    # The login that owns it: who may withdraw from it, send its money and read it.
    owned_by: Subject


@register
class DepositMoney(Message):
    SCHEMA_VERSION: ClassVar[int] = 2  # v2: description

    account_id: StreamName
    amount: Money
    # Set when a transfer's saga sends the command; the resulting event carries them on.
    transfer_id: StreamName | None = None
    description: Description | None = None


@register
class WithdrawMoney(Message):
    SCHEMA_VERSION: ClassVar[int] = 2  # v2: description

    account_id: StreamName
    amount: Money
    transfer_id: StreamName | None = None
    description: Description | None = None


AccountCommand = OpenAccount | DepositMoney | WithdrawMoney
ACCOUNT_COMMANDS: tuple[type[AccountCommand], ...] = (OpenAccount, DepositMoney, WithdrawMoney)

# --- events: facts, in the past tense; each carries what the read side needs ---------------


@register
class AccountOpened(Message):
    SCHEMA_VERSION: ClassVar[int] = 2  # v2: owned_by

    account_id: StreamName
    owner: str
    owned_by: str
    initial_balance: Money
    balance_after: Money


@register
class MoneyDeposited(Message):
    SCHEMA_VERSION: ClassVar[int] = 2  # v2: description

    account_id: StreamName
    amount: Money
    balance_after: Money
    transfer_id: StreamName | None = None
    # The transfer's memo, as its sender typed it (None: not a transfer, or none was given).
    description: str | None  # no default: a payload that skipped its upcaster fails


@register
class MoneyWithdrawn(Message):
    SCHEMA_VERSION: ClassVar[int] = 2  # v2: description

    account_id: StreamName
    amount: Money
    balance_after: Money
    transfer_id: StreamName | None = None
    description: str | None  # no default: a payload that skipped its upcaster fails


AccountEvent = AccountOpened | MoneyDeposited | MoneyWithdrawn
ACCOUNT_EVENTS: tuple[type[AccountEvent], ...] = (AccountOpened, MoneyDeposited, MoneyWithdrawn)


# --- upcasters: older payloads, as stored or sent, brought to the versions above ------------


@upcaster("DepositMoney", 1)
@upcaster("WithdrawMoney", 1)
@upcaster("MoneyDeposited", 1)
@upcaster("MoneyWithdrawn", 1)
def _no_description(payload: Payload) -> Payload:
    """v1 -> v2: written before transfers had a description."""
    return {**payload, "description": None}


@upcaster("OpenAccount", 1)
@upcaster("AccountOpened", 1)
def _owned_by_the_teller(payload: Payload) -> Payload:
    """v1 -> v2: opened before accounts had owners; the bank's teller holds them."""
    return {**payload, "owned_by": TELLER}
