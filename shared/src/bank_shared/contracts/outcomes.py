"""The one answer every command gets: accepted (with the stream's new version) or rejected."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from bank_shared.contracts.envelope import Message, register
from bank_shared.money import Money

RejectionCode = Literal[
    "account_already_exists",
    "account_not_found",
    "insufficient_funds",
    "invalid_amount",
    "transfer_already_exists",
    "same_account",
    "unprocessable_command",
]

# The rejection of a command its service could not process at all (unreadable, or refused by
# the database): it was dead-lettered, and this outcome tells its sender so.
UNPROCESSABLE = "unprocessable_command"


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
