"""The REST endpoints: read the read model as the caller may see it (a customer: their own
accounts and the transfers that touch them; a teller: all); with `min_version`, wait until it
caught up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError

from bank_query_api import queries
from bank_query_api.freshness import ReadModelChanges, wait_for_version
from bank_query_api.openapi import problem, responses
from bank_query_api.problems import RETRY_SOON, ProblemError
from bank_query_api.schemas import (
    TRANSFER_STATUSES,
    Account,
    AccountHistory,
    AccountPage,
    Transfer,
    TransferPage,
    TransferStatus,
)
from bank_query_api.settings import QueryApiSettings
from bank_query_api.slots import Slots
from bank_shared.contracts.actors import Actor
from bank_shared.http.bearer import unauthenticated
from bank_shared.ids import StreamName

# No one pages this far; the bound keeps a huge offset from overflowing PostgreSQL's bigint.
MAX_OFFSET = 2_147_483_647

AccountIdPath = Annotated[StreamName, Path(description="The account's id.", examples=["alice"])]
TransferIdPath = Annotated[
    StreamName, Path(description="The transfer's id.", examples=["t-2026-0001"])
]
Offset = Annotated[
    int,
    Query(
        ge=0,
        le=MAX_OFFSET,
        description="How many items to skip (0 = from the first).",
        examples=[0],
    ),
]

ACCOUNT_NOT_FOUND = problem(
    "404 There is no such account (or none of yours: a customer reads only their own)",
    (
        "account_not_found",
        "There is no account 'alice'. Open one with POST /accounts on the command API, or check"
        " the account id.",
    ),
)
NOT_YET_PROJECTED = problem(
    "503 The read model has not reached `min_version` within the bound (retry after"
    " `Retry-After` seconds), or the read database is unreachable",
    (
        "not_yet_projected",
        "The read model has account 'alice' at version 2, not yet 3 (waited 5 s). The"
        " projector is catching up: retry in a moment.",
    ),
    ("service_unavailable", "The read database cannot be reached right now; try again."),
    (
        "too_many_waiters",
        "200 requests already wait for min_version on this server, the most it lets wait. Retry"
        " after Retry-After seconds, or read without min_version.",
    ),
    retry=True,
)
TRANSFER_NOT_FOUND = problem(
    "404 There is no such transfer (or none of yours: a customer reads only the transfers from"
    " or to their accounts)",
    (
        "transfer_not_found",
        "There is no transfer 't-1'. Check the transfer id (from the answer to POST /transfers"
        " on the command API); a transfer just started may take a moment to appear.",
    ),
)


router = APIRouter()


def too_many_waiters(capacity: int) -> ProblemError:
    return ProblemError(
        503,
        "too_many_waiters",
        f"{capacity} requests already wait for min_version on this server, the most it lets"
        " wait. Retry after Retry-After seconds, or read without min_version.",
        headers=RETRY_SOON,
    )


class Reader:
    """What the routes read with: the read database's pool (once the app has started), the
    changes a `min_version` wait listens to, and the slots of those waits."""

    def __init__(self, changes: ReadModelChanges, *, max_waiters: int) -> None:
        self.changes = changes
        self.waiters = Slots(max_waiters, too_many_waiters)
        self.started_pool: queries.Pool | None = None

    @property
    def pool(self) -> queries.Pool:
        if self.started_pool is None:
            raise ProblemError(
                503,
                "service_unavailable",
                "The API is starting; try again shortly.",
                headers=RETRY_SOON,
            )
        return self.started_pool


async def the_caller(request: Request) -> Actor:
    """Who asks. The app includes these routes behind the bearer token dependency
    (`bank_shared.http.bearer.actor_of`), which runs before the route's own and leaves the
    authenticated actor on the request; without it, nothing is read."""
    actor: Actor | None = getattr(request.state, "actor", None)
    if actor is None:
        raise unauthenticated(
            "This needs a bearer token: log in with POST /token on the command API."
        )
    return actor


async def the_reader(request: Request) -> Reader:
    reader: Reader = request.app.state.reader
    return reader


def account_not_found(account_id: str) -> ProblemError:
    return ProblemError(
        404,
        "account_not_found",
        f"There is no account {account_id!r}. Open one with POST /accounts on the command API,"
        " or check the account id. Just opened it? Ask with ?min_version=1 to wait for it.",
        account_id=account_id,
    )


def not_yet_projected(
    account_id: str, min_version: int, account: Account | None, waited: float
) -> ProblemError:
    if account is None:
        where = f"Account {account_id!r} is not in the read model yet"
        hint = " If it never appears, check the account id."
    else:
        where = (
            f"The read model has account {account_id!r} at version {account.version},"
            f" not yet {min_version}"
        )
        hint = ""
    return ProblemError(
        503,
        "not_yet_projected",
        f"{where} (waited {waited:g} s). The projector is catching up: retry in a moment.{hint}",
        headers=RETRY_SOON,
        account_id=account_id,
        min_version=min_version,
        version=None if account is None else account.version,
    )


async def the_settings(request: Request) -> QueryApiSettings:
    settings: QueryApiSettings = request.app.state.settings
    return settings


Caller = Annotated[Actor, Depends(the_caller)]
ReaderDep = Annotated[Reader, Depends(the_reader)]
SettingsDep = Annotated[QueryApiSettings, Depends(the_settings)]


async def limit_of(
    settings: SettingsDep,
    limit: Annotated[
        int | None,
        Query(
            ge=1,
            description="How many items at most (default 50; at most 500, or the configured"
            " BANK_QUERY_API_MAX_LIMIT).",
            examples=[50],
        ),
    ] = None,
) -> int:
    if limit is None:
        return settings.default_limit
    if limit > settings.max_limit:  # a setting, not a type: checked here, reported alike
        raise RequestValidationError(
            [
                {
                    "type": "less_than_equal",
                    "loc": ("query", "limit"),
                    "msg": f"Input should be less than or equal to {settings.max_limit}",
                    "input": limit,
                    "ctx": {"le": settings.max_limit},
                }
            ]
        )
    return limit


LimitDep = Annotated[int, Depends(limit_of)]


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int


async def one_page(limit: LimitDep, offset: Offset = 0) -> Page:
    return Page(limit, offset)


PageDep = Annotated[Page, Depends(one_page)]


@router.get(
    "/accounts",
    tags=["accounts"],
    summary="List accounts",
    response_description="A page of accounts and how many there are in all.",
    responses=responses(),
)
async def list_accounts(caller: Caller, reader: ReaderDep, page: PageDep) -> AccountPage:
    """Your accounts (a teller: every account) in the order they were opened (then by id),
    one page at a time."""
    return await queries.list_accounts(reader.pool, caller, limit=page.limit, offset=page.offset)


@router.get(
    "/accounts/{account_id}",
    tags=["accounts"],
    summary="One account (optionally: once it reflects your write)",
    response_description="The account (at `min_version` or later, when asked).",
    responses=responses(ACCOUNT_NOT_FOUND, NOT_YET_PROJECTED),
)
async def get_account(
    account_id: AccountIdPath,
    caller: Caller,
    reader: ReaderDep,
    settings: SettingsDep,
    min_version: Annotated[
        int | None,
        Query(
            ge=1,
            description="Wait (at most the configured bound, default 5 s) until the read model"
            " has applied this version of the account: pass the `version` the command API"
            " answered to read your own write. Not reached in time: 503 `not_yet_projected`"
            " with `Retry-After` (404 if the account is still not there at all).",
            examples=[3],
        ),
    ] = None,
) -> Account:
    """The account's owner, balance and version. The read model follows the write side
    shortly after; `min_version` bridges that gap for the caller who just wrote. Another
    customer's account is answered as one that does not exist, after the same wait."""

    async def load() -> Account | None:
        return await queries.find_account(reader.pool, account_id, caller)

    account = await load()
    if min_version is None:
        if account is None:
            raise account_not_found(account_id)
        return account
    if account is not None and account.version >= min_version:
        return account  # no wait, so no waiter's slot either
    with reader.waiters.held():
        fresh = await wait_for_version(
            load,
            reader.changes.next_change,
            min_version,
            bound=settings.min_version_wait,
            recheck=settings.min_version_recheck,
        )
    if fresh.row is None:
        # Still nowhere after the bound: answer as for an unknown account, not with a retry
        # that a mistyped id would make endless.
        raise account_not_found(account_id)
    if not fresh.reached:
        raise not_yet_projected(account_id, min_version, fresh.row, settings.min_version_wait)
    return fresh.row


@router.get(
    "/accounts/{account_id}/events",
    tags=["accounts"],
    summary="An account's history, newest first",
    response_description="The account's events, newest first.",
    responses=responses(ACCOUNT_NOT_FOUND),
)
async def account_events(
    account_id: AccountIdPath, caller: Caller, reader: ReaderDep, limit: LimitDep
) -> AccountHistory:
    """The account's latest `limit` events (opening, deposits, withdrawals), with the balance
    after each and, for a transfer's, its description."""
    found = await queries.account_activity(reader.pool, account_id, caller, limit=limit)
    if found is None:
        raise account_not_found(account_id)
    return AccountHistory(items=found)


@router.get(
    "/transfers",
    tags=["transfers"],
    summary="List transfers",
    response_description="A page of transfers and how many match in all.",
    responses=responses(ACCOUNT_NOT_FOUND),
)
async def list_transfers(
    caller: Caller,
    reader: ReaderDep,
    page: PageDep,
    account_id: Annotated[
        StreamName | None,
        Query(
            description="Only transfers from or to this account (a customer: one of theirs,"
            " else 404 `account_not_found`).",
            examples=["alice"],
        ),
    ] = None,
    status: Annotated[
        TransferStatus | None,
        Query(
            description=f"Only transfers in this state: one of {', '.join(TRANSFER_STATUSES)}.",
            examples=["completed"],
        ),
    ] = None,
) -> TransferPage:
    """Transfers from or to your accounts (a teller: all), newest first (by start, then id),
    one page at a time, each with its description and its two accounts' holders (a
    customer sees the other side's account id, not its holder)."""
    if (
        account_id is not None
        and not caller.is_teller
        and await queries.find_account(reader.pool, account_id, caller) is None
    ):
        raise account_not_found(account_id)
    return await queries.list_transfers(
        reader.pool,
        queries.TransferFilter(account_id=account_id, status=status),
        caller,
        limit=page.limit,
        offset=page.offset,
    )


@router.get(
    "/transfers/{transfer_id}",
    tags=["transfers"],
    summary="One transfer and how far it got",
    response_description="The transfer.",
    responses=responses(TRANSFER_NOT_FOUND),
)
async def get_transfer(transfer_id: TransferIdPath, caller: Caller, reader: ReaderDep) -> Transfer:
    """The transfer's accounts (with their holders; a customer sees only their own side's),
    amount, description and status; `reason` (and `refunded`) once failed. A transfer that
    touches none of a customer's accounts is answered as one that does not exist."""
    transfer = await queries.find_transfer(reader.pool, transfer_id, caller)
    if transfer is None:
        raise ProblemError(
            404,
            "transfer_not_found",
            f"There is no transfer {transfer_id!r}. Check the transfer id (from the answer to"
            " POST /transfers on the command API); a transfer just started may take a moment"
            " to appear.",
            transfer_id=transfer_id,
        )
    return transfer
