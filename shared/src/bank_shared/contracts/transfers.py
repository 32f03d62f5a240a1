"""The transfers service's language: starting a transfer, and the facts of its life."""

from __future__ import annotations

from typing import ClassVar, Literal

from bank_shared.contracts.actors import BANK_TELLER, Actor
from bank_shared.contracts.envelope import Message, register
from bank_shared.contracts.upcasting import Payload, upcaster
from bank_shared.ids import StreamName
from bank_shared.money import Money
from bank_shared.text import Description

# --- the command the command API sends -------------------------------------------------------


@register
class StartTransfer(Message):
    SCHEMA_VERSION: ClassVar[int] = 2  # v2: description

    transfer_id: StreamName
    source_account_id: StreamName
    target_account_id: StreamName
    amount: Money
    # What the transfer is for, as its sender typed it; carried to both accounts' events.
    description: Description | None = None


# --- events of a transfer stream (stream id = transfer id) ----------------------------------

TransferFailureReason = Literal[
    "insufficient_funds",
    "source_account_not_found",
    "target_account_not_found",
    "invalid_amount",
    "refund_refused",
]


@register
class TransferStarted(Message):
    SCHEMA_VERSION: ClassVar[int] = 3  # v2: description; v3: requested_by

    transfer_id: StreamName
    source_account_id: StreamName
    target_account_id: StreamName
    amount: Money
    description: str | None  # no default: a payload that skipped its upcaster fails
    # Who asked for it: the debit of the source is sent in their name, and refused unless
    # they may act on the source account.
    requested_by: Actor


@register
class TransferDebited(Message):
    """The source account was debited (its MoneyWithdrawn was accepted)."""

    transfer_id: StreamName
    source_account_id: StreamName
    amount: Money


@register
class TransferCreditRefused(Message):
    """The target refused the deposit: the saga now refunds the source."""

    transfer_id: StreamName
    reason: TransferFailureReason


@register
class TransferCompleted(Message):
    transfer_id: StreamName


@register
class TransferFailed(Message):
    """The transfer is over without moving money; `refunded` when the source was debited
    and has been given the money back. The one exception is `refund_refused` (the source
    would pass the balance ceiling of 10^15 EUR): the money is then out of the source and
    needs an operator; see docs/transfers.md."""

    transfer_id: StreamName
    reason: TransferFailureReason
    refunded: bool = False


TransferEvent = (
    TransferStarted | TransferDebited | TransferCreditRefused | TransferCompleted | TransferFailed
)
TRANSFER_EVENTS: tuple[type[TransferEvent], ...] = (
    TransferStarted,
    TransferDebited,
    TransferCreditRefused,
    TransferCompleted,
    TransferFailed,
)


# --- upcasters: older payloads, as stored or sent, brought to the versions above ------------


@upcaster("StartTransfer", 1)
@upcaster("TransferStarted", 1)
def _no_description(payload: Payload) -> Payload:
    """v1 -> v2: written before transfers had a description."""
    return {**payload, "description": None}


@upcaster("TransferStarted", 2)
def _requested_by_the_teller(payload: Payload) -> Payload:
    """v2 -> v3: started before envelopes named a sender; the bank's teller asked for it."""
    return {**payload, "requested_by": BANK_TELLER.model_dump()}
