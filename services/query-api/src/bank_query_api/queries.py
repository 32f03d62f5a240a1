"""Reads of the read database (built by the projector): accounts, their activity, transfers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

import asyncpg

from bank_query_api.schemas import (
    Account,
    AccountActivity,
    AccountPage,
    Transfer,
    TransferPage,
    TransferStatus,
)
from bank_shared.db import Connection

READ_MODEL_TABLES = ("accounts", "account_activity", "transfers")

ACCOUNT_COLUMNS = "account_id, owner, balance, version, opened_at, updated_at"
ACTIVITY_COLUMNS = "version, type, amount, balance_after, transfer_id, description, occurred_at"
TRANSFER_COLUMNS = (
    "transfer_id, source_account_id, target_account_id, amount, description, status, reason,"
    " refunded, started_at, debited_at, finished_at"
)

Pool: TypeAlias = "asyncpg.Pool[Any]"


@dataclass(frozen=True)
class TransferFilter:
    account_id: str | None = None
    status: TransferStatus | None = None

    def where(self) -> tuple[str, list[object]]:
        """The WHERE clause (placeholders only, never values) and its arguments."""
        conditions: list[str] = []
        arguments: list[object] = []
        if self.account_id is not None:
            arguments.append(self.account_id)
            n = len(arguments)
            conditions.append(f"(source_account_id = ${n} OR target_account_id = ${n})")
        if self.status is not None:
            arguments.append(self.status)
            conditions.append(f"status = ${len(arguments)}")
        return (f"WHERE {' AND '.join(conditions)}" if conditions else ""), arguments


async def find_account(db: Pool | Connection, account_id: str) -> Account | None:
    row = await db.fetchrow(
        f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_id = $1",  # noqa: S608
        account_id,
    )
    return None if row is None else Account(**row)


async def list_accounts(pool: Pool, *, limit: int, offset: int) -> AccountPage:
    async with pool.acquire() as conn, snapshot(conn):
        total: int = await conn.fetchval("SELECT count(*) FROM accounts")
        rows = await conn.fetch(
            f"SELECT {ACCOUNT_COLUMNS} FROM accounts"  # noqa: S608
            " ORDER BY opened_at, account_id LIMIT $1 OFFSET $2",
            limit,
            offset,
        )
    return AccountPage(items=[Account(**row) for row in rows], total=total)


async def account_activity(
    pool: Pool, account_id: str, *, limit: int
) -> list[AccountActivity] | None:
    """The account's latest events, newest first; None when there is no such account."""
    async with pool.acquire() as conn, snapshot(conn):
        known = await conn.fetchval("SELECT 1 FROM accounts WHERE account_id = $1", account_id)
        if known is None:
            return None
        rows = await conn.fetch(
            f"SELECT {ACTIVITY_COLUMNS} FROM account_activity"  # noqa: S608
            " WHERE account_id = $1 ORDER BY version DESC LIMIT $2",
            account_id,
            limit,
        )
    return [AccountActivity(**row) for row in rows]


def with_owners(transfers: str) -> str:
    """`transfers` (a SELECT of TRANSFER_COLUMNS), each row with its two accounts' owners:
    joined after the rows are chosen, so a page costs two key lookups a row, and an account
    not in the read model (yet, or ever) gives a null owner instead of hiding the transfer."""
    return (
        "SELECT t.*, s.owner AS source_owner, g.owner AS target_owner"  # noqa: S608
        f" FROM ({transfers}) AS t"
        " LEFT JOIN accounts s ON s.account_id = t.source_account_id"
        " LEFT JOIN accounts g ON g.account_id = t.target_account_id"
    )


async def find_transfer(pool: Pool, transfer_id: str) -> Transfer | None:
    row = await pool.fetchrow(
        with_owners(f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE transfer_id = $1"),  # noqa: S608
        transfer_id,
    )
    return None if row is None else Transfer(**row)


async def list_transfers(
    pool: Pool, matching: TransferFilter, *, limit: int, offset: int
) -> TransferPage:
    where, arguments = matching.where()
    n = len(arguments)
    async with pool.acquire() as conn, snapshot(conn):
        total: int = await conn.fetchval(
            f"SELECT count(*) FROM transfers {where}",  # noqa: S608
            *arguments,
        )
        page = (
            f"SELECT {TRANSFER_COLUMNS} FROM transfers {where}"  # noqa: S608
            f" ORDER BY started_at DESC, transfer_id LIMIT ${n + 1} OFFSET ${n + 2}"
        )
        rows = await conn.fetch(
            # A join keeps no order of its own: the page's order is asked for again.
            f"{with_owners(page)} ORDER BY t.started_at DESC, t.transfer_id",
            *arguments,
            limit,
            offset,
        )
    return TransferPage(items=[Transfer(**row) for row in rows], total=total)


async def missing_tables(db: Pool | Connection) -> list[str]:
    """The read model's tables that do not exist (yet): the projector creates them."""
    found = await db.fetchval(
        "SELECT array_agg(name) FROM unnest($1::text[]) AS name WHERE to_regclass(name) IS NULL",
        list(READ_MODEL_TABLES),
    )
    return [table for table in READ_MODEL_TABLES if table in (found or ())]


def snapshot(conn: Connection) -> asyncpg.transaction.Transaction:
    """One read-only snapshot, so a page and its `total` (or an account and its history)
    agree although the projector commits in between."""
    return conn.transaction(isolation="repeatable_read", readonly=True)
