"""The REST endpoints: validate, send the command, answer with its decision (DESIGN §3)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID, uuid4

from fastapi import APIRouter, Header, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from bank_command_api.answers import answer_for, command_status, prefers_async
from bank_command_api.dispatch import Dispatcher, Outgoing
from bank_command_api.idempotency import (
    KEY_PATTERN,
    IdempotencyKey,
    IdempotencyKeyInUseError,
    IdempotencyKeyReusedError,
    fingerprint,
)
from bank_command_api.openapi import (
    BAD_AMOUNT,
    KEY_IN_USE,
    KEY_REUSED,
    PENDING,
    problem,
    responses,
)
from bank_command_api.problems import ProblemError
from bank_command_api.schemas import (
    AccountCommandAccepted,
    AmountRequest,
    CommandPending,
    CommandRequest,
    CommandStatus,
    OpenAccountRequest,
    TransferAccepted,
    TransferRequest,
)
from bank_command_api.settings import CommandApiSettings
from bank_shared.contracts.accounts import DepositMoney, OpenAccount, WithdrawMoney
from bank_shared.contracts.transfers import StartTransfer
from bank_shared.http.problems import RETRY_SOON
from bank_shared.ids import StreamName
from bank_shared.money import SEND_INSTEAD

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=KEY_PATTERN,
        description="Makes a retry safe: the same key with the same request gives the same"
        " answer and has no second effect; with a different request it is refused (422).",
        examples=["5f0c1d0e-7a2b-4c1e-9d55-2b4f7e3a9c10"],
    ),
]
PreferHeader = Annotated[
    str | None,
    Header(
        alias="Prefer",
        description="`respond-async`: answer 202 pending at once instead of waiting for the"
        " decision.",
        examples=["respond-async"],
    ),
]
TRANSFER_ACCEPTED = {
    "transfer_id": "t-1",
    "command_id": "0b9f8c2e-3f7d-4c55-9a8e-1d2c3b4a5f60",
    "status": "accepted",
}
TRANSFER_PENDING = {**TRANSFER_ACCEPTED, "status": "pending"}
AccountIdPath = Annotated[StreamName, Path(description="The account.", examples=["alice"])]

INVALID = problem(
    "422 The request is invalid (nothing was sent), or the key was used for another request",
    BAD_AMOUNT,
    KEY_REUSED,
)
INVALID_OR_REFUSED_AMOUNT = problem(
    "422 The request is invalid (nothing was sent), the key was used for another request,"
    " or the write side refused the amount",
    BAD_AMOUNT,
    KEY_REUSED,
    ("invalid_amount", f"The amount was refused; {SEND_INSTEAD}, more than zero."),
)
NOT_FOUND = problem(
    "404 The account does not exist",
    ("account_not_found", "There is no account 'alice'. Open it first with POST /accounts."),
)


def dispatcher_of(request: Request) -> Dispatcher:
    dispatcher: Dispatcher | None = getattr(request.app.state, "dispatcher", None)
    if dispatcher is None:
        raise ProblemError(503, "service_unavailable", "The API is starting; try again shortly.")
    return dispatcher


def command_routes(settings: CommandApiSettings) -> APIRouter:
    router = APIRouter()
    topics = settings.topics

    async def send(
        request: Request,
        body: CommandRequest,
        outgoing: Outgoing,
        idempotency_key: str | None,
        prefer: str | None,
    ) -> JSONResponse:
        key = None
        if idempotency_key is not None:
            digest = fingerprint(request.method, request.url.path, body.model_dump(mode="json"))
            key = IdempotencyKey(idempotency_key, digest)
        async_requested = prefers_async(prefer)
        try:
            record = await dispatcher_of(request).send(
                outgoing, idempotency=key, wait=not async_requested
            )
        except IdempotencyKeyReusedError:
            raise ProblemError(422, *KEY_REUSED) from None
        except IdempotencyKeyInUseError:
            raise ProblemError(409, *KEY_IN_USE, headers=RETRY_SOON) from None
        answer = answer_for(
            record, query_api_url=settings.query_api_url, async_requested=async_requested
        )
        return answer.response()

    def check(body: CommandRequest) -> None:
        problems = body.problems(settings.max_amount)
        if problems:
            raise RequestValidationError(problems)

    @router.post(
        "/accounts",
        tags=["accounts"],
        summary="Open an account",
        status_code=201,
        response_model=AccountCommandAccepted,
        responses=responses(
            INVALID,
            problem(
                "409 An account with this id exists already, or a request with this key is"
                " still being recorded",
                ("account_already_exists", "Account 'alice' exists already. Choose another."),
                KEY_IN_USE,
            ),
        ),
    )
    async def open_account(
        body: OpenAccountRequest,
        request: Request,
        idempotency_key: IdempotencyKeyHeader = None,
        prefer: PreferHeader = None,
    ) -> JSONResponse:
        """201 with the new account's version (1) and balance once the accounts service opened
        it; 409 if the id is taken."""
        check(body)
        account_id = body.account_id or str(uuid4())
        command = OpenAccount(
            account_id=account_id, owner=body.owner, initial_balance=body.initial_balance
        )
        outgoing = Outgoing(command, topics.account_commands, account_id)
        return await send(request, body, outgoing, idempotency_key, prefer)

    @router.post(
        "/accounts/{account_id}/deposits",
        tags=["accounts"],
        summary="Deposit money",
        response_model=AccountCommandAccepted,
        responses=responses(
            INVALID_OR_REFUSED_AMOUNT,
            NOT_FOUND,
            problem("409 A request with this key is still being recorded", KEY_IN_USE),
        ),
    )
    async def deposit(
        account_id: AccountIdPath,
        body: AmountRequest,
        request: Request,
        idempotency_key: IdempotencyKeyHeader = None,
        prefer: PreferHeader = None,
    ) -> JSONResponse:
        """200 with the account's new version and balance."""
        check(body)
        command = DepositMoney(account_id=account_id, amount=body.amount)
        outgoing = Outgoing(command, topics.account_commands, account_id)
        return await send(request, body, outgoing, idempotency_key, prefer)

    @router.post(
        "/accounts/{account_id}/withdrawals",
        tags=["accounts"],
        summary="Withdraw money",
        response_model=AccountCommandAccepted,
        responses=responses(
            INVALID_OR_REFUSED_AMOUNT,
            NOT_FOUND,
            problem(
                "409 The account does not hold that much, or a request with this key is still"
                " being recorded",
                ("insufficient_funds", "Account 'alice' does not hold that much. ..."),
                KEY_IN_USE,
            ),
        ),
    )
    async def withdraw(
        account_id: AccountIdPath,
        body: AmountRequest,
        request: Request,
        idempotency_key: IdempotencyKeyHeader = None,
        prefer: PreferHeader = None,
    ) -> JSONResponse:
        """200 with the account's new version and balance; 409 if the balance is too low."""
        check(body)
        command = WithdrawMoney(account_id=account_id, amount=body.amount)
        outgoing = Outgoing(command, topics.account_commands, account_id)
        return await send(request, body, outgoing, idempotency_key, prefer)

    @router.post(
        "/transfers",
        tags=["transfers"],
        summary="Start a transfer",
        status_code=202,
        # 202 is both answers: started (accepted) and not decided yet (pending).
        response_model=TransferAccepted | CommandPending,
        responses={
            **responses(
                problem(
                    "422 The request is invalid (same account, bad amount; nothing was sent),"
                    " or the key was used for another request",
                    BAD_AMOUNT,
                    KEY_REUSED,
                ),
                problem(
                    "409 A transfer with this id exists already, or a request with this key is"
                    " still being recorded",
                    ("transfer_already_exists", "Transfer 't-1' exists already. ..."),
                    KEY_IN_USE,
                ),
            ),
            202: {
                "description": "Started (status `accepted`, Location: the transfer in the query"
                " API), or not decided in time or `Prefer: respond-async` (status `pending`,"
                " Location: the transfer in the query API; Content-Location:"
                " /commands/{command_id}).",
                "headers": PENDING[202]["headers"],
                "content": {
                    "application/json": {
                        "examples": {
                            "accepted": {"value": TRANSFER_ACCEPTED},
                            "pending": {"value": TRANSFER_PENDING},
                        }
                    }
                },
            },
        },
    )
    async def start_transfer(
        body: TransferRequest,
        request: Request,
        idempotency_key: IdempotencyKeyHeader = None,
        prefer: PreferHeader = None,
    ) -> JSONResponse:
        """The transfers saga starts the transfer; its progress (debited, completed, failed)
        is read from the query API at the `Location`."""
        check(body)
        transfer_id = body.transfer_id or str(uuid4())
        command = StartTransfer(
            transfer_id=transfer_id,
            source_account_id=body.source_account_id,
            target_account_id=body.target_account_id,
            amount=body.amount,
        )
        outgoing = Outgoing(command, topics.transfer_commands, transfer_id)
        return await send(request, body, outgoing, idempotency_key, prefer)

    @router.get(
        "/commands/{command_id}",
        tags=["commands"],
        summary="What became of a command",
        response_model=CommandStatus,
        responses={
            404: problem(
                "404 No command with this id was sent through this API",
                ("command_not_found", "No command ... was sent here; use the id of a POST."),
            ),
        },
    )
    async def get_command(
        command_id: Annotated[UUID, Path(description="From a POST's answer or Location.")],
        request: Request,
    ) -> JSONResponse:
        """`pending` until the write side decided; then `accepted` (with version and balance)
        or `rejected` (with `code`)."""
        record = await dispatcher_of(request).find(command_id)
        if record is None:
            raise ProblemError(
                404,
                "command_not_found",
                f"No command {command_id} was sent through this API. Use the command_id (or"
                " the Location) from the answer to your POST.",
            )
        return JSONResponse(command_status(record))

    return router
