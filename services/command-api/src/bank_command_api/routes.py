"""The REST endpoints: validate, build the command, send it, answer with its decision."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from uuid import UUID, uuid4

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.exceptions import RequestValidationError

from bank_command_api.answers import (
    Accepted,
    answer,
    command_status,
    prefers_async,
    rejection_message,
)
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
    UNAUTHENTICATED,
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
from bank_command_api.throttling import Throttle
from bank_shared.auth.users import Users
from bank_shared.contracts.accounts import DepositMoney, OpenAccount, WithdrawMoney
from bank_shared.contracts.actors import TELLER, Actor
from bank_shared.contracts.transfers import StartTransfer
from bank_shared.http.bearer import BearerToken, actor_of
from bank_shared.http.problems import RETRY_SOON, ProblemError

router = APIRouter()

# Tokens come from this API's own `POST /token` (login.py).
BEARER = BearerToken("token")
Caller = Annotated[Actor, Depends(actor_of(BEARER))]


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
    actor: Actor
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
            key = IdempotencyKey(self.actor.subject, self.idempotency_key, digest)
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

    def refuse_chosen_id(self, name: str | None, what: str) -> None:
        """Only tellers choose ids: a customer's id is a new UUID, which no one can guess
        (or find taken, which would tell them it exists)."""
        if name is not None and not self.actor.is_teller:
            raise ProblemError(
                403,
                "teller_only",
                f"Only a teller may choose the id of a new {what}. Leave {what}_id out and"
                " one is chosen for you; send an Idempotency-Key to retry safely.",
            )


async def the_post(
    request: Request,
    response: Response,
    dispatcher: Sender,
    settings: Settings,
    actor: Caller,
    idempotency_key: IdempotencyKeyHeader = None,
    prefer: PreferHeader = None,
) -> Post:
    throttle: Throttle = request.app.state.throttle
    throttle.command(request, actor)
    return Post(request, response, dispatcher, settings, actor, idempotency_key, prefer)


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
    it; 409 if the id is taken. Customers open accounts for themselves, empty; tellers for
    anyone (`owned_by`), with money in them."""
    post.refuse_chosen_id(body.account_id, "account")
    owned_by = body.owned_by or post.actor.subject
    users: Users = post.request.app.state.users
    if post.actor.is_teller and owned_by not in users:
        raise ProblemError(
            422,
            "unknown_user",
            f"No user {owned_by!r} can log in to this bank: owned_by must name one (or leave"
            " it out to own the account yourself).",
        )
    account_id = body.account_id or str(uuid4())
    command = OpenAccount(
        account_id=account_id,
        owner=body.owner,
        initial_balance=body.initial_balance,
        owned_by=owned_by,
    )
    topic = post.settings.topics.account_commands
    return await post.send(body, Outgoing(command, post.actor, topic, account_id, owned_by))


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
    outgoing = Outgoing(command, post.actor, post.settings.topics.account_commands, account_id)
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
    outgoing = Outgoing(command, post.actor, post.settings.topics.account_commands, account_id)
    return await post.send(body, outgoing)


@router.post(
    "/transfers",
    response_model=TransferAccepted | CommandPending,
    tags=["transfers"],
    summary="Start a transfer",
    status_code=202,
    response_model_exclude_none=True,
    responses={**responses(TRANSFER_REFUSED, ACCOUNT_NOT_FOUND), **TRANSFER_ANSWERS},
)
async def start_transfer(body: TransferRequest, post: CommandPost) -> Accepted:
    """The transfers saga starts the transfer; its progress (debited, completed, failed) is
    read from the query API at the `Location`. A customer sends money from their own
    accounts only; to any account."""
    post.refuse_chosen_id(body.transfer_id, "transfer")
    source = body.source_account_id
    if not post.actor.is_teller and not await post.dispatcher.opened_for(
        source, post.actor.subject
    ):
        # What the accounts service would answer to the debit, but before anything is written.
        raise ProblemError(
            404,
            "account_not_found",
            rejection_message("account_not_found", source, post.settings.query_api_url),
            account_id=source,
        )
    transfer_id = body.transfer_id or str(uuid4())
    command = StartTransfer(
        transfer_id=transfer_id,
        source_account_id=body.source_account_id,
        target_account_id=body.target_account_id,
        amount=body.amount,
        description=body.description,
    )
    outgoing = Outgoing(command, post.actor, post.settings.topics.transfer_commands, transfer_id)
    return await post.send(body, outgoing)


@router.get(
    "/commands/{command_id}",
    tags=["commands"],
    summary="What became of a command",
    responses={401: UNAUTHENTICATED, 404: COMMAND_NOT_FOUND},
)
async def get_command(
    command_id: Annotated[UUID, Path(description="From a POST's answer or Location.")],
    request: Request,
    dispatcher: Sender,
    actor: Caller,
) -> CommandStatus:
    """`pending` until the write side decided; then `accepted` (with version and balance) or
    `rejected` (with `code`). Only its sender (or a teller) sees a command."""
    ensure_started(request)
    record = await dispatcher.find(command_id)
    if record is None or not actor.may_act_on(record.subject or TELLER):
        raise ProblemError(
            404,
            "command_not_found",
            f"No command {command_id} was sent through this API. Use the command_id (or the"
            " Location) from the answer to your POST.",
        )
    return command_status(record)
