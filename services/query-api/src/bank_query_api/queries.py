"""Reads of the read database (built by the projector): accounts, their activity, transfers,
each as one viewer may see them: a customer their own accounts and the transfers that touch
them, a teller everything."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
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
from bank_shared.contracts.actors import Actor
from bank_shared.db import Connection

READ_MODEL_TABLES = ("accounts", "account_activity", "transfers")

ACCOUNT_COLUMNS = "account_id, owner, balance, version, opened_at, updated_at"
ACTIVITY_COLUMNS = "version, type, amount, balance_after, transfer_id, description, occurred_at"
TRANSFER_COLUMNS = (
    "transfer_id, source_account_id, target_account_id, amount, description, status, reason,"
    " refunded, started_at, debited_at, finished_at"
)

Pool: TypeAlias = "asyncpg.Pool[Any]"


def customer_of(viewer: Actor) -> str | None:
    """Whose accounts `viewer` may read: a customer's own (their login), or everyone's (None)
    for a teller."""
    return None if viewer.is_teller else viewer.subject


def accounts_of(viewer: Actor, first: int) -> tuple[str, list[object]]:
    """The condition (after WHERE, placeholders from ${first}) that keeps `viewer`'s accounts
    only, and its arguments; TRUE for a teller."""
    customer = customer_of(viewer)
    if customer is None:
        return "TRUE", []
    return f"owned_by = ${first}", [customer]


@dataclass(frozen=True)
class TransferFilter:
    account_id: str | None = None
    status: TransferStatus | None = None
    # A customer's login: only transfers from or to one of their accounts (None: all).
    visible_to: str | None = None

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
        if self.visible_to is not None:
            arguments.append(self.visible_to)
            # The customer's account ids, found once by accounts_owned_by; then each side by
            # its own index (transfers_source, transfers_target).
            mine = f"ARRAY(SELECT account_id FROM accounts WHERE owned_by = ${len(arguments)})"  # noqa: S608
            conditions.append(
                f"(source_account_id = ANY({mine}) OR target_account_id = ANY({mine}))"
            )
        return (f"WHERE {' AND '.join(conditions)}" if conditions else ""), arguments


async def find_account(db: Pool | Connection, account_id: str, viewer: Actor) -> Account | None:
    """The account, if there is one that `viewer` may read."""
    mine, arguments = accounts_of(viewer, 2)
    row = await db.fetchrow(
        f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_id = $1 AND {mine}",  # noqa: S608
        account_id,
        *arguments,
    )
    return None if row is None else Account(**row)


async def list_accounts(pool: Pool, viewer: Actor, *, limit: int, offset: int) -> AccountPage:
    mine, arguments = accounts_of(viewer, 1)
    n = len(arguments)
    async with pool.acquire() as conn, snapshot(conn):
        total: int = await conn.fetchval(
            f"SELECT count(*) FROM accounts WHERE {mine}",  # noqa: S608
            *arguments,
        )
        rows = await conn.fetch(
            f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE {mine}"  # noqa: S608
            f" ORDER BY opened_at, account_id LIMIT ${n + 1} OFFSET ${n + 2}",
            *arguments,
            limit,
            offset,
        )
    return AccountPage(items=[Account(**row) for row in rows], total=total)


async def account_activity(
    pool: Pool, account_id: str, viewer: Actor, *, limit: int
) -> list[AccountActivity] | None:
    """The account's latest events, newest first; None when there is no such account that
    `viewer` may read."""
    mine, arguments = accounts_of(viewer, 2)
    async with pool.acquire() as conn, snapshot(conn):
        known = await conn.fetchval(
            f"SELECT 1 FROM accounts WHERE account_id = $1 AND {mine}",  # noqa: S608
            account_id,
            *arguments,
        )
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
    """`transfers` (a SELECT of TRANSFER_COLUMNS), each row with its two accounts' holders and
    owning logins: joined after the rows are chosen, so a page costs two key lookups a row, and
    an account not in the read model (yet, or ever) gives nulls instead of hiding the
    transfer."""
    return (
        "SELECT t.*, s.owner AS source_owner, g.owner AS target_owner,"  # noqa: S608
        " s.owned_by AS source_owned_by, g.owned_by AS target_owned_by"
        f" FROM ({transfers}) AS t"
        " LEFT JOIN accounts s ON s.account_id = t.source_account_id"
        " LEFT JOIN accounts g ON g.account_id = t.target_account_id"
    )


def transfer_seen_by(viewer: Actor, row: Mapping[str, Any]) -> Transfer:
    """A transfer as `viewer` may see it: a customer sees the counterparty's account id, not
    who holds it."""
    values = dict(row)
    for side in ("source", "target"):
        # None: an account not in the read model (yet), which no customer owns.
        if not viewer.may_act_on(values.pop(f"{side}_owned_by")):
            values[f"{side}_owner"] = None
    return Transfer(**values)


async def find_transfer(pool: Pool, transfer_id: str, viewer: Actor) -> Transfer | None:
    """The transfer, if there is one from or to an account that `viewer` may read."""
    row = await pool.fetchrow(
        with_owners(f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE transfer_id = $1"),  # noqa: S608
        transfer_id,
    )
    if row is None or not (
        viewer.may_act_on(row["source_owned_by"]) or viewer.may_act_on(row["target_owned_by"])
    ):
        return None
    return transfer_seen_by(viewer, row)


async def list_transfers(
    pool: Pool, matching: TransferFilter, viewer: Actor, *, limit: int, offset: int
) -> TransferPage:
    """The transfers that match, of those `viewer` may read (`total` counts only those)."""
    where, arguments = replace(matching, visible_to=customer_of(viewer)).where()
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
    return TransferPage(items=[transfer_seen_by(viewer, row) for row in rows], total=total)


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
