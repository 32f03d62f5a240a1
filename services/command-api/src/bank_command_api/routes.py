"""The REST endpoints: validate, build the command, send it, answer with its decision."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from uuid import UUID, uuid4

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.exceptions import RequestValidationError

from bank_command_api.answers import Accepted, answer, command_status, prefers_async
from bank_command_api.dispatch import Dispatcher, Outgoing
from bank_command_api.idempotency import (
    IdempotencyKey,
    IdempotencyKeyInUseError,
    IdempotencyKeyReusedError,
    fingerprint,
)
from bank_command_api.openapi import (
    ACCOUNT_NOT_FOUND,
    COMMAND_NOT_FOUND,
    DEPOSIT_REFUSED,
    KEY_IN_USE,
    KEY_REUSED,
    OPEN_REFUSED,
    TRANSFER_ANSWERS,
    TRANSFER_REFUSED,
    WITHDRAWAL_REFUSED,
    AccountIdPath,
    IdempotencyKeyHeader,
    PreferHeader,
    responses,
)
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
from bank_shared.http.problems import RETRY_SOON, ProblemError

router = APIRouter()


async def the_dispatcher(request: Request) -> Dispatcher:
    dispatcher: Dispatcher = request.app.state.dispatcher
    return dispatcher


def ensure_started(request: Request) -> None:
    if not request.app.state.platform.started:
        raise ProblemError(503, "service_unavailable", "The API is starting; try again shortly.")


async def the_settings(request: Request) -> CommandApiSettings:
    settings: CommandApiSettings = request.app.state.settings
    return settings


Sender = Annotated[Dispatcher, Depends(the_dispatcher)]
Settings = Annotated[CommandApiSettings, Depends(the_settings)]


@dataclass(frozen=True)
class Post:
    """What every command POST shares: its request and response, its two optional headers,
    and where commands go."""

    request: Request
    response: Response
    dispatcher: Dispatcher
    settings: CommandApiSettings
    idempotency_key: str | None
    prefer: str | None

    async def send(self, body: CommandRequest, outgoing: Outgoing) -> Accepted:
        """Check what the types cannot (the configured maximum), send, and answer."""
        if problems := body.problems(self.settings.max_amount):
            raise RequestValidationError(problems)
        ensure_started(self.request)
        key = None
        if self.idempotency_key is not None:
            request = self.request
            digest = fingerprint(request.method, request.url.path, body.fingerprint_body())
            key = IdempotencyKey(self.idempotency_key, digest)
        async_requested = prefers_async(self.prefer)
        try:
            record = await self.dispatcher.send(outgoing, idempotency=key, wait=not async_requested)
        except IdempotencyKeyReusedError:
            raise ProblemError(422, *KEY_REUSED) from None
        except IdempotencyKeyInUseError:
            raise ProblemError(409, *KEY_IN_USE, headers=RETRY_SOON) from None
        return answer(
            record,
            self.response,
            query_api_url=self.settings.query_api_url,
            async_requested=async_requested,
        )


async def the_post(
    request: Request,
    response: Response,
    dispatcher: Sender,
    settings: Settings,
    idempotency_key: IdempotencyKeyHeader = None,
    prefer: PreferHeader = None,
) -> Post:
    return Post(request, response, dispatcher, settings, idempotency_key, prefer)


CommandPost = Annotated[Post, Depends(the_post)]


@router.post(
    "/accounts",
    response_model=AccountCommandAccepted | CommandPending,
    tags=["accounts"],
    summary="Open an account",
    status_code=201,
    response_model_exclude_none=True,
    responses=responses(OPEN_REFUSED),
)
async def open_account(body: OpenAccountRequest, post: CommandPost) -> Accepted:
    """201 with the new account's version (1) and balance once the accounts service opened
    it; 409 if the id is taken."""
    account_id = body.account_id or str(uuid4())
    command = OpenAccount(
        account_id=account_id, owner=body.owner, initial_balance=body.initial_balance
    )
    outgoing = Outgoing(command, post.settings.topics.account_commands, account_id)
    return await post.send(body, outgoing)


@router.post(
    "/accounts/{account_id}/deposits",
    response_model=AccountCommandAccepted | CommandPending,
    tags=["accounts"],
    summary="Deposit money",
    response_model_exclude_none=True,
    responses=responses(DEPOSIT_REFUSED, ACCOUNT_NOT_FOUND),
)
async def deposit(account_id: AccountIdPath, body: AmountRequest, post: CommandPost) -> Accepted:
    """200 with the account's new version and balance."""
    command = DepositMoney(account_id=account_id, amount=body.amount)
    outgoing = Outgoing(command, post.settings.topics.account_commands, account_id)
    return await post.send(body, outgoing)


@router.post(
    "/accounts/{account_id}/withdrawals",
    response_model=AccountCommandAccepted | CommandPending,
    tags=["accounts"],
    summary="Withdraw money",
    response_model_exclude_none=True,
    responses=responses(WITHDRAWAL_REFUSED, ACCOUNT_NOT_FOUND),
)
async def withdraw(account_id: AccountIdPath, body: AmountRequest, post: CommandPost) -> Accepted:
    """200 with the account's new version and balance; 409 if the balance is too low."""
    command = WithdrawMoney(account_id=account_id, amount=body.amount)
    outgoing = Outgoing(command, post.settings.topics.account_commands, account_id)
    return await post.send(body, outgoing)


@router.post(
    "/transfers",
    response_model=TransferAccepted | CommandPending,
    tags=["transfers"],
    summary="Start a transfer",
    status_code=202,
    response_model_exclude_none=True,
    responses={**responses(TRANSFER_REFUSED), **TRANSFER_ANSWERS},
)
async def start_transfer(body: TransferRequest, post: CommandPost) -> Accepted:
    """The transfers saga starts the transfer; its progress (debited, completed, failed) is
    read from the query API at the `Location`."""
    transfer_id = body.transfer_id or str(uuid4())
    command = StartTransfer(
        transfer_id=transfer_id,
        source_account_id=body.source_account_id,
        target_account_id=body.target_account_id,
        amount=body.amount,
        description=body.description,
    )
    outgoing = Outgoing(command, post.settings.topics.transfer_commands, transfer_id)
    return await post.send(body, outgoing)


@router.get(
    "/commands/{command_id}",
    tags=["commands"],
    summary="What became of a command",
    responses={404: COMMAND_NOT_FOUND},
)
async def get_command(
    command_id: Annotated[UUID, Path(description="From a POST's answer or Location.")],
    request: Request,
    dispatcher: Sender,
) -> CommandStatus:
    """`pending` until the write side decided; then `accepted` (with version and balance) or
    `rejected` (with `code`)."""
    ensure_started(request)
    record = await dispatcher.find(command_id)
    if record is None:
        raise ProblemError(
            404,
            "command_not_found",
            f"No command {command_id} was sent through this API. Use the command_id (or the"
            " Location) from the answer to your POST.",
        )
    return command_status(record)
