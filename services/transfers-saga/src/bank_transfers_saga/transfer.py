"""The Transfer aggregate as a decider: a transfer's own events are its state.

    TransferStarted --debited--> TransferDebited --credited--> TransferCompleted
          |  refused                    |  refused
          v                             v
    TransferFailed              TransferCreditRefused --refunded--> TransferFailed (refunded)

What moves it from one event to the next is the MoneyTransfer process manager (saga.py)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Literal

from bank_shared.contracts.actors import BANK_TELLER, Actor
from bank_shared.contracts.outcomes import Rejection
from bank_shared.contracts.transfers import (
    TRANSFER_EVENTS,
    StartTransfer,
    TransferCompleted,
    TransferCreditRefused,
    TransferDebited,
    TransferEvent,
    TransferFailed,
    TransferFailureReason,
    TransferStarted,
)
from bank_shared.eventstore.unit_of_work import Aggregate
from bank_shared.money import ZERO

Status = Literal["new", "started", "debited", "refunding", "completed", "failed"]


@dataclass(frozen=True)
class TransferState:
    status: Status = "new"
    transfer_id: str = ""
    source_account_id: str = ""
    target_account_id: str = ""
    amount: Decimal = ZERO
    description: str | None = None
    requested_by: Actor = BANK_TELLER
    credit_refused_reason: TransferFailureReason | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed")


INITIAL = TransferState()


def decide(
    command: StartTransfer, state: TransferState, sender: Actor
) -> list[TransferEvent] | Rejection:
    """Whether the sender may move the source's money is the accounts service's to decide:
    the debit goes out in the sender's name (`requested_by`)."""
    if state.status != "new":
        return Rejection(
            "transfer_already_exists",
            f"transfer {command.transfer_id} already exists; send a new transfer id "
            "(or none, and one is chosen for you)",
        )
    if command.source_account_id == command.target_account_id:
        return Rejection("same_account", "source and target must be different accounts")
    if command.amount <= ZERO:
        return Rejection("invalid_amount", "a transfer must move a positive amount")
    return [
        TransferStarted(
            transfer_id=command.transfer_id,
            source_account_id=command.source_account_id,
            target_account_id=command.target_account_id,
            amount=command.amount,
            description=command.description,
            requested_by=sender,
        )
    ]


def evolve(state: TransferState, event: TransferEvent) -> TransferState:
    match event:
        case TransferStarted():
            return TransferState(
                status="started",
                transfer_id=event.transfer_id,
                source_account_id=event.source_account_id,
                target_account_id=event.target_account_id,
                amount=event.amount,
                description=event.description,
                requested_by=event.requested_by,
            )
        case TransferDebited():
            return replace(state, status="debited")
        case TransferCreditRefused():
            return replace(state, status="refunding", credit_refused_reason=event.reason)
        case TransferCompleted():
            return replace(state, status="completed")
        case TransferFailed():
            return replace(state, status="failed")


TRANSFER = Aggregate(initial=INITIAL, evolve=evolve, events=TRANSFER_EVENTS)
