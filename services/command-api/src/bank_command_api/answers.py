"""From a command's record to the HTTP answer: its body, status code and headers."""

from __future__ import annotations

from fastapi import Response

from bank_command_api.ledger import CommandRecord
from bank_command_api.schemas import (
    AccountCommandAccepted,
    CommandPending,
    CommandStatus,
    TransferAccepted,
)
from bank_shared.http.problems import ProblemError
from bank_shared.money import ZERO

ACCEPTED_STATUS = {"OpenAccount": 201, "DepositMoney": 200, "WithdrawMoney": 200}
TRANSFER = "StartTransfer"
REJECTED_STATUS = {
    "account_not_found": 404,
    "teller_only": 403,
    "insufficient_funds": 409,
    "account_already_exists": 409,
    "transfer_already_exists": 409,
    "invalid_amount": 422,
    "same_account": 422,
    "unprocessable_command": 422,
}
# A rejection code this API does not know yet: the request was valid, the state refused it.
OTHER_REJECTION_STATUS = 409


Accepted = AccountCommandAccepted | TransferAccepted | CommandPending


def prefers_async(prefer: str | None) -> bool:
    """Whether a `Prefer` header (RFC 7240) asks for `respond-async`."""
    for preference in (prefer or "").split(","):
        name = preference.split(";")[0].split("=")[0].strip().lower()
        if name == "respond-async":
            return True
    return False


def stream_field(command_type: str) -> str:
    return "transfer_id" if command_type == TRANSFER else "account_id"


def answer(
    record: CommandRecord, response: Response, *, query_api_url: str, async_requested: bool
) -> Accepted:
    """The body of the answer to a POST, with its status and headers set on `response`; a
    rejection is raised as its problem."""
    transfer_url = f"{query_api_url.rstrip('/')}/transfers/{record.stream_id}"
    if record.status == "rejected":
        raise rejection(record, query_api_url)
    if record.status == "pending":
        response.status_code = 202
        if record.command_type == TRANSFER:
            # A transfer's Location is always the transfer; its command's status is elsewhere.
            response.headers["Location"] = transfer_url
            response.headers["Content-Location"] = f"/commands/{record.command_id}"
        else:
            response.headers["Location"] = f"/commands/{record.command_id}"
        if async_requested:
            response.headers["Preference-Applied"] = "respond-async"
        return CommandPending(
            command_id=record.command_id, **{stream_field(record.command_type): record.stream_id}
        )
    if record.command_type == TRANSFER:
        response.status_code = 202
        response.headers["Location"] = transfer_url
        return TransferAccepted(transfer_id=record.stream_id, command_id=record.command_id)
    response.status_code = ACCEPTED_STATUS.get(record.command_type, 200)
    return AccountCommandAccepted(
        account_id=record.stream_id,
        command_id=record.command_id,
        version=record.version or 0,
        balance=record.balance if record.balance is not None else ZERO,
    )


def rejection(record: CommandRecord, query_api_url: str) -> ProblemError:
    code = record.code or "rejected"
    return ProblemError(
        REJECTED_STATUS.get(code, OTHER_REJECTION_STATUS),
        code,
        rejection_message(code, record.stream_id, query_api_url),
        detail=record.reason,
        command_id=record.command_id,
        account_id=None if record.command_type == TRANSFER else record.stream_id,
        transfer_id=record.stream_id if record.command_type == TRANSFER else None,
    )


def rejection_message(code: str, stream_id: str, query_api_url: str) -> str:
    """What the client can do about a rejection."""
    match code:
        case "account_not_found":
            return (
                f"You have no account {stream_id!r}. Check the account id (GET /accounts on"
                " the query API lists yours), or open one with POST /accounts."
            )
        case "teller_only":
            return (
                "Only a teller may do this (detail says what). Ask a teller, or do it the"
                " customer's way that detail names."
            )
        case "insufficient_funds":
            return (
                f"Account {stream_id!r} does not hold that much. Withdraw at most its balance"
                f" (see {query_api_url.rstrip('/')}/accounts/{stream_id})."
            )
        case "account_already_exists":
            return (
                f"Account {stream_id!r} exists already. Choose another account_id, or leave it"
                " out to get a new one."
            )
        case "transfer_already_exists":
            return (
                f"Transfer {stream_id!r} exists already. Choose another transfer_id, or leave it"
                " out to get a new one."
            )
        case "unprocessable_command":
            return (
                "The service could not process this command at all (detail says why); nothing"
                " was changed. Correct the request and send it again."
            )
        case "same_account":
            return "A transfer needs two different accounts; change source or target."
        case "invalid_amount":
            return (
                "The amount was refused (detail says why): send a positive amount that keeps"
                " the balance below the limit."
            )
        case _:
            return f"The command was refused ({code}); see detail, change the request, retry."


def command_status(record: CommandRecord) -> CommandStatus:
    return CommandStatus(
        command_id=record.command_id,
        command_type=record.command_type,
        stream_id=record.stream_id,
        status=record.status,
        code=record.code,
        reason=record.reason,
        version=record.version,
        balance=record.balance,
    )
