"""The MoneyTransfer process manager: from a transfer's state and the answer to its last step,
what happens next. Pure functions; steps.py keeps the steps it sends, handlers.py runs it.

    started:   withdraw from the source  -> accepted: TransferDebited
                                          -> refused:  TransferFailed
    debited:   deposit into the target   -> accepted: TransferCompleted
                                          -> refused:  TransferCreditRefused
    refunding: deposit back into source  -> accepted: TransferFailed (refunded)
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from bank_shared.contracts.accounts import AccountCommand, DepositMoney, WithdrawMoney
from bank_shared.contracts.transfers import (
    TransferCompleted,
    TransferCreditRefused,
    TransferDebited,
    TransferEvent,
    TransferFailed,
    TransferFailureReason,
    TransferStarted,
)
from bank_shared.ids import derived_id
from bank_transfers_saga.transfer import Status, TransferState

Step = Literal["withdraw", "deposit", "refund"]

# The step each status waits for: an answer to any other step is late (a duplicate, or a
# re-send that crossed the first answer) and changes nothing.
AWAITED_STEP: dict[Status, Step] = {
    "started": "withdraw",
    "debited": "deposit",
    "refunding": "refund",
}


def step_command_id(transfer_id: str, step: Step) -> UUID:
    """Derived, not random: a re-sent or re-decided step is the same command downstream, so
    the accounts service applies it at most once."""
    return derived_id("transfer", transfer_id, step)


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
    if accepted:  # the refund
        reason = state.credit_refused_reason or "target_account_not_found"
        return [TransferFailed(transfer_id=transfer_id, reason=reason, refunded=True)]
    return [TransferFailed(transfer_id=transfer_id, reason="refund_refused", refunded=False)]


def next_steps(state: TransferState, event: TransferEvent) -> list[tuple[Step, AccountCommand]]:
    """The account command each transfer event calls for (`state` is the state after it)."""
    match event:
        case TransferStarted():
            withdraw = WithdrawMoney(
                account_id=state.source_account_id,
                amount=state.amount,
                transfer_id=state.transfer_id,
                description=state.description,
            )
            return [("withdraw", withdraw)]
        case TransferDebited():
            deposit = DepositMoney(
                account_id=state.target_account_id,
                amount=state.amount,
                transfer_id=state.transfer_id,
                description=state.description,
            )
            return [("deposit", deposit)]
        case TransferCreditRefused():
            refund = DepositMoney(
                account_id=state.source_account_id,
                amount=state.amount,
                transfer_id=state.transfer_id,
                description=state.description,
            )
            return [("refund", refund)]
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
