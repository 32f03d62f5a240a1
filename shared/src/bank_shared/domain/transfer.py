"""The Transfer aggregate and the MoneyTransfer process manager, as pure functions.

A transfer's own events are its state; the process manager reads that state and the answer
to its last step, and says what happens next:

    TransferStarted --withdraw source--> TransferDebited --deposit target--> TransferCompleted
          |  refused                            |  refused
          v                                     v
    TransferFailed                      TransferCreditRefused --refund source--> TransferFailed
                                                                                 (refunded)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Literal

from bank_shared.contracts.accounts import AccountCommand, DepositMoney, WithdrawMoney
from bank_shared.contracts.transfers import (
    StartTransfer,
    TransferCompleted,
    TransferCreditRefused,
    TransferDebited,
    TransferEvent,
    TransferFailed,
    TransferFailureReason,
    TransferStarted,
)
from bank_shared.domain.account import Rejection
from bank_shared.money import ZERO

Status = Literal["new", "started", "debited", "refunding", "completed", "failed"]
Step = Literal["withdraw", "deposit", "refund"]


@dataclass(frozen=True)
class TransferState:
    status: Status = "new"
    transfer_id: str = ""
    source_account_id: str = ""
    target_account_id: str = ""
    amount: Decimal = ZERO
    credit_refused_reason: TransferFailureReason | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed")


INITIAL = TransferState()


def decide_start(command: StartTransfer, state: TransferState) -> list[TransferEvent] | Rejection:
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
            )
        case TransferDebited():
            return replace(state, status="debited")
        case TransferCreditRefused():
            return replace(state, status="refunding", credit_refused_reason=event.reason)
        case TransferCompleted():
            return replace(state, status="completed")
        case TransferFailed():
            return replace(state, status="failed")


def fold(events: Iterable[TransferEvent], state: TransferState = INITIAL) -> TransferState:
    for event in events:
        state = evolve(state, event)
    return state


# --- the process manager ---------------------------------------------------------------------

# Which step the process waits for in each status: an answer to any other step is late
# (a duplicate, or a resend that crossed the first answer) and changes nothing.
AWAITED_STEP: dict[Status, Step] = {
    "started": "withdraw",
    "debited": "deposit",
    "refunding": "refund",
}


def on_step_answer(
    state: TransferState, step: Step, accepted: bool, code: str | None
) -> list[TransferEvent]:
    """What the answer to a step means for the transfer."""
    if AWAITED_STEP.get(state.status) != step:
        return []
    transfer_id = state.transfer_id
    if step == "withdraw":
        if accepted:
            return [
                TransferDebited(
                    transfer_id=transfer_id,
                    source_account_id=state.source_account_id,
                    amount=state.amount,
                )
            ]
        return [TransferFailed(transfer_id=transfer_id, reason=_source_reason(code))]
    if step == "deposit":
        if accepted:
            return [TransferCompleted(transfer_id=transfer_id)]
        return [TransferCreditRefused(transfer_id=transfer_id, reason=_target_reason(code))]
    # The refund: a deposit back into the account the money came from.
    if accepted:
        return [
            TransferFailed(
                transfer_id=transfer_id,
                reason=state.credit_refused_reason or "target_account_not_found",
                refunded=True,
            )
        ]
    return [TransferFailed(transfer_id=transfer_id, reason="refund_refused", refunded=False)]


def commands_after(state: TransferState, event: TransferEvent) -> list[tuple[Step, AccountCommand]]:
    """The account command each transfer event calls for (`state` is the state after it)."""
    match event:
        case TransferStarted():
            return [
                (
                    "withdraw",
                    WithdrawMoney(
                        account_id=state.source_account_id,
                        amount=state.amount,
                        transfer_id=state.transfer_id,
                    ),
                )
            ]
        case TransferDebited():
            return [
                (
                    "deposit",
                    DepositMoney(
                        account_id=state.target_account_id,
                        amount=state.amount,
                        transfer_id=state.transfer_id,
                    ),
                )
            ]
        case TransferCreditRefused():
            return [
                (
                    "refund",
                    DepositMoney(
                        account_id=state.source_account_id,
                        amount=state.amount,
                        transfer_id=state.transfer_id,
                    ),
                )
            ]
        case _:
            return []


def _source_reason(code: str | None) -> TransferFailureReason:
    if code == "insufficient_funds":
        return "insufficient_funds"
    if code == "invalid_amount":
        return "invalid_amount"
    return "source_account_not_found"


def _target_reason(code: str | None) -> TransferFailureReason:
    return "invalid_amount" if code == "invalid_amount" else "target_account_not_found"
