"""From a command's record to the HTTP answer: status code, body and headers (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from fastapi.responses import JSONResponse

from bank_command_api.ledger import CommandRecord
from bank_command_api.problems import PROBLEM_JSON
from bank_command_api.schemas import (
    AccountCommandAccepted,
    CommandPending,
    CommandStatus,
    Problem,
    TransferAccepted,
)
from bank_shared.money import ZERO

ACCEPTED_STATUS = {"OpenAccount": 201, "DepositMoney": 200, "WithdrawMoney": 200}
TRANSFER = "StartTransfer"
REJECTED_STATUS = {
    "account_not_found": 404,
    "insufficient_funds": 409,
    "account_already_exists": 409,
    "transfer_already_exists": 409,
    "invalid_amount": 422,
    "same_account": 422,
    "unprocessable_command": 422,
}
# A rejection code this API does not know yet: the request was valid, the state refused it.
OTHER_REJECTION_STATUS = 409


@dataclass(frozen=True)
class HttpAnswer:
    status_code: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = "application/json"

    def response(self) -> JSONResponse:
        return JSONResponse(
            self.body,
            status_code=self.status_code,
            headers=self.headers,
            media_type=self.media_type,
        )


def prefers_async(prefer: str | None) -> bool:
    """Whether a `Prefer` header (RFC 7240) asks for `respond-async`."""
    for preference in (prefer or "").split(","):
        name = preference.split(";")[0].split("=")[0].strip().lower()
        if name == "respond-async":
            return True
    return False


def stream_field(command_type: str) -> str:
    return "transfer_id" if command_type == TRANSFER else "account_id"


def answer_for(
    record: CommandRecord, *, query_api_url: str, async_requested: bool = False
) -> HttpAnswer:
    if record.status == "pending":
        body = CommandPending(
            command_id=record.command_id, **{stream_field(record.command_type): record.stream_id}
        )
        # A transfer's Location is always the transfer in the query API (DESIGN §3); the
        # command's own status is where any other pending command can be followed.
        headers = (
            {
                "Location": f"{query_api_url.rstrip('/')}/transfers/{record.stream_id}",
                "Content-Location": f"/commands/{record.command_id}",
            }
            if record.command_type == TRANSFER
            else {"Location": f"/commands/{record.command_id}"}
        )
        if async_requested:
            headers["Preference-Applied"] = "respond-async"
        return HttpAnswer(202, dump(body), headers)
    if record.status == "accepted":
        return accepted(record, query_api_url)
    return rejected(record, query_api_url)


def accepted(record: CommandRecord, query_api_url: str) -> HttpAnswer:
    if record.command_type == TRANSFER:
        transfer = TransferAccepted(transfer_id=record.stream_id, command_id=record.command_id)
        location = f"{query_api_url.rstrip('/')}/transfers/{record.stream_id}"
        return HttpAnswer(202, dump(transfer), {"Location": location})
    account = AccountCommandAccepted(
        account_id=record.stream_id,
        command_id=record.command_id,
        version=record.version or 0,
        balance=record.balance if record.balance is not None else ZERO,
    )
    return HttpAnswer(ACCEPTED_STATUS.get(record.command_type, 200), dump(account))


def rejected(record: CommandRecord, query_api_url: str) -> HttpAnswer:
    code = record.code or "rejected"
    status = REJECTED_STATUS.get(code, OTHER_REJECTION_STATUS)
    problem = Problem(
        title=HTTPStatus(status).phrase,
        status=status,
        code=code,
        message=rejection_message(code, record.stream_id, query_api_url),
        detail=record.reason,
        command_id=record.command_id,
        **{stream_field(record.command_type): record.stream_id},
    )
    return HttpAnswer(status, dump(problem), media_type=PROBLEM_JSON)


def rejection_message(code: str, stream_id: str, query_api_url: str) -> str:
    """What the client can do about a rejection."""
    match code:
        case "account_not_found":
            return (
                f"There is no account {stream_id!r}. Open it first with POST /accounts,"
                " or check the account id."
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


def command_status(record: CommandRecord) -> dict[str, Any]:
    return CommandStatus(
        command_id=record.command_id,
        command_type=record.command_type,
        stream_id=record.stream_id,
        status=record.status,
        code=record.code,
        reason=record.reason,
        version=record.version,
        balance=record.balance,
    ).model_dump(mode="json")


def dump(model: Any) -> dict[str, Any]:
    result: dict[str, Any] = model.model_dump(mode="json", exclude_none=True)
    return result
