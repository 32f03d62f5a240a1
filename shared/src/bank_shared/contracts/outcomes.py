"""The one answer every command gets: accepted (with the stream's new version) or rejected."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal
from uuid import UUID

from bank_shared.contracts.envelope import Envelope, Message, register, seal
from bank_shared.ids import derived_id
from bank_shared.money import Money

RejectionCode = Literal[
    "account_already_exists",
    "account_not_found",
    "insufficient_funds",
    "invalid_amount",
    "transfer_already_exists",
    "same_account",
    "teller_only",
    "unprocessable_command",
]

# The rejection of a command its service could not process at all (unreadable, or refused by
# the database): it was dead-lettered, and this outcome tells its sender so.
UNPROCESSABLE = "unprocessable_command"


@dataclass(frozen=True)
class Rejection:
    """A command the rules refuse: a machine-readable code and a sentence for people."""

    code: str
    reason: str


@register
class CommandOutcome(Message):
    """Accepted (with the stream's new version and balance) or rejected (with a reason code).
    Published on the outcomes topic with `causation_id` = the command id."""

    command_id: UUID
    command_type: str
    stream_id: str
    status: Literal["accepted", "rejected"]
    version: int | None = None
    balance: Money | None = None
    code: str | None = None
    reason: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"


def accepted(
    command: Envelope, stream_id: str, version: int, balance: Decimal | None = None
) -> CommandOutcome:
    return CommandOutcome(
        command_id=command.message_id,
        command_type=command.type,
        stream_id=stream_id,
        status="accepted",
        version=version,
        balance=balance,
    )


def rejected(
    command: Envelope, stream_id: str, rejection: Rejection, version: int | None = None
) -> CommandOutcome:
    return CommandOutcome(
        command_id=command.message_id,
        command_type=command.type,
        stream_id=stream_id,
        status="rejected",
        code=rejection.code,
        reason=rejection.reason,
        version=version,
    )


def answer_to(command: Envelope, outcome: CommandOutcome, occurred_at: datetime) -> Envelope:
    """`outcome`, sealed as the answer to `command`. Its id is derived from the command's, so
    whoever answers a command (its service, or the dead letters) gives it the same one."""
    return seal(
        outcome,
        message_id=derived_id(command.message_id, "outcome"),
        correlation_id=command.correlation_id,
        causation_id=command.message_id,
        occurred_at=occurred_at,
    )
