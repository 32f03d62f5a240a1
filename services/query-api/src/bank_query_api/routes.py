"""The REST endpoints: read the read model; with `min_version`, wait until it caught up (§3)."""

# No `from __future__ import annotations` here: the `limit` bounds come from the settings, so
# its annotation is made inside query_routes, and FastAPI could not resolve it from a string
# (it looks names up in the module, not in the function that defines the route).

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

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
    dump,
)
from bank_query_api.settings import QueryApiSettings
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
    "404 There is no such account",
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
    retry=True,
)
TRANSFER_NOT_FOUND = problem(
    "404 There is no such transfer",
    (
        "transfer_not_found",
        "There is no transfer 't-1'. Check the transfer id (from the answer to POST /transfers"
        " on the command API); a transfer just started may take a moment to appear.",
    ),
)


@dataclass(frozen=True)
class Reader:
    """What the routes read with: the pool, and the changes a `min_version` wait listens to."""

    pool: queries.Pool
    changes: ReadModelChanges


def reader_of(request: Request) -> Reader:
    reader: Reader | None = getattr(request.app.state, "reader", None)
    if reader is None:
        raise ProblemError(
            503,
            "service_unavailable",
            "The API is starting; try again shortly.",
            headers=RETRY_SOON,
        )
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


def query_routes(settings: QueryApiSettings) -> APIRouter:
    router = APIRouter()
    limit_rule = Query(
        ge=1,
        le=settings.max_limit,
        description=f"How many items at most (1 to {settings.max_limit}).",
        examples=[settings.default_limit],
    )
    Limit = Annotated[int, limit_rule]  # noqa: N806

    @router.get(
        "/accounts",
        tags=["accounts"],
        summary="List accounts",
        response_model=AccountPage,
        response_description="A page of accounts and how many there are in all.",
        responses=responses(),
    )
    async def list_accounts(
        request: Request, limit: Limit = settings.default_limit, offset: Offset = 0
    ) -> JSONResponse:
        """Accounts in the order they were opened (then by id), one page at a time."""
        page = await queries.list_accounts(reader_of(request).pool, limit=limit, offset=offset)
        return JSONResponse(dump(page))

    @router.get(
        "/accounts/{account_id}",
        tags=["accounts"],
        summary="One account (optionally: once it reflects your write)",
        response_model=Account,
        response_description="The account (at `min_version` or later, when asked).",
        responses=responses(ACCOUNT_NOT_FOUND, NOT_YET_PROJECTED),
    )
    async def get_account(
        account_id: AccountIdPath,
        request: Request,
        min_version: Annotated[
            int | None,
            Query(
                ge=1,
                description="Wait (at most the configured bound, default 5 s) until the read"
                " model has applied this version of the account: pass the `version` the"
                " command API answered to read your own write. Not reached in time: 503"
                " `not_yet_projected` with `Retry-After` (404 if the account is still not"
                " there at all).",
                examples=[3],
            ),
        ] = None,
    ) -> JSONResponse:
        """The account's owner, balance and version. The read model follows the write side
        shortly after; `min_version` bridges that gap for the caller who just wrote."""
        reader = reader_of(request)
        if min_version is None:
            account = await queries.find_account(reader.pool, account_id)
            if account is None:
                raise account_not_found(account_id)
            return JSONResponse(dump(account))

        async def load() -> Account | None:
            return await queries.find_account(reader.pool, account_id)

        fresh = await wait_for_version(
            load,
            reader.changes.next_change,
            min_version,
            bound=settings.min_version_wait,
            recheck=settings.min_version_recheck,
        )
        if not fresh.reached:
            if fresh.row is None:
                # Still nowhere after the bound: answer as the contract says for an unknown
                # account, not with a retry that a mistyped id would make endless.
                raise account_not_found(account_id)
            raise not_yet_projected(account_id, min_version, fresh.row, settings.min_version_wait)
        assert fresh.row is not None
        return JSONResponse(dump(fresh.row))

    @router.get(
        "/accounts/{account_id}/events",
        tags=["accounts"],
        summary="An account's history, newest first",
        response_description="The account's events, newest first.",
        response_model=AccountHistory,
        responses=responses(ACCOUNT_NOT_FOUND),
    )
    async def account_events(
        account_id: AccountIdPath, request: Request, limit: Limit = settings.default_limit
    ) -> JSONResponse:
        """The account's latest `limit` events (opening, deposits, withdrawals), with the
        balance after each."""
        found = await queries.account_activity(reader_of(request).pool, account_id, limit=limit)
        if found is None:
            raise account_not_found(account_id)
        return JSONResponse(dump(AccountHistory(items=found)))

    @router.get(
        "/transfers",
        tags=["transfers"],
        summary="List transfers",
        response_model=TransferPage,
        response_description="A page of transfers and how many match in all.",
        responses=responses(),
    )
    async def list_transfers(
        request: Request,
        account_id: Annotated[
            StreamName | None,
            Query(
                description="Only transfers from or to this account.",
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
        limit: Limit = settings.default_limit,
        offset: Offset = 0,
    ) -> JSONResponse:
        """Transfers, newest first (by start, then id), one page at a time."""
        page = await queries.list_transfers(
            reader_of(request).pool,
            queries.TransferFilter(account_id=account_id, status=status),
            limit=limit,
            offset=offset,
        )
        return JSONResponse(dump(page))

    @router.get(
        "/transfers/{transfer_id}",
        tags=["transfers"],
        summary="One transfer and how far it got",
        response_model=Transfer,
        response_description="The transfer.",
        responses=responses(TRANSFER_NOT_FOUND),
    )
    async def get_transfer(transfer_id: TransferIdPath, request: Request) -> JSONResponse:
        """The transfer's accounts, amount and status; `reason` (and `refunded`) once failed."""
        transfer = await queries.find_transfer(reader_of(request).pool, transfer_id)
        if transfer is None:
            raise ProblemError(
                404,
                "transfer_not_found",
                f"There is no transfer {transfer_id!r}. Check the transfer id (from the answer to"
                " POST /transfers on the command API); a transfer just started may take a"
                " moment to appear.",
                transfer_id=transfer_id,
            )
        return JSONResponse(dump(transfer))

    return router
