"""Peer (a): the same transfer as one plain SQL transaction with asyncpg, the practical limit.

Both account rows are locked in id order (so two transfers between the same pair in opposite
directions cannot deadlock), the source is checked for funds, two UPDATEs move the money and a
ledger row records the transfer, all in one transaction. No events, no messages: what a
hand-written CRUD bank on the same PostgreSQL costs.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal

import asyncpg

from bank_shared.settings import PostgresSettings
from bench.scratch import scratch_databases

SCHEMA = """
CREATE TABLE accounts (
    account_id text          PRIMARY KEY,
    balance    numeric(17,2) NOT NULL CHECK (balance >= 0)
);
CREATE TABLE ledger (
    transfer_id uuid          PRIMARY KEY,
    source      text          NOT NULL REFERENCES accounts,
    target      text          NOT NULL REFERENCES accounts,
    amount      numeric(17,2) NOT NULL,
    at          timestamptz   NOT NULL DEFAULT now()
);
"""


class InsufficientFundsError(Exception):
    pass


class PlainSqlBank:
    name = "plain_sql"
    # The bank runs inside the bench process (counted as "bench") and PostgreSQL.
    processes: dict[str, int | None] = {}  # noqa: RUF012 - read only

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def transfer(self, source: str, target: str, amount: Decimal) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT account_id, balance FROM accounts WHERE account_id = ANY($1::text[])"
                " ORDER BY account_id FOR UPDATE",
                [source, target],
            )
            balances = {row["account_id"]: row["balance"] for row in rows}
            if balances[source] < amount:
                raise InsufficientFundsError(source)
            await conn.execute(
                "UPDATE accounts SET balance = balance - $2 WHERE account_id = $1", source, amount
            )
            await conn.execute(
                "UPDATE accounts SET balance = balance + $2 WHERE account_id = $1", target, amount
            )
            await conn.execute(
                "INSERT INTO ledger (transfer_id, source, target, amount) VALUES ($1, $2, $3, $4)",
                uuid.uuid4(),
                source,
                target,
                amount,
            )


@contextlib.asynccontextmanager
async def plain_sql_bank(
    base: PostgresSettings, accounts: int, balance: Decimal, connections: int
) -> AsyncIterator[tuple[PlainSqlBank, Sequence[str]]]:
    async with scratch_databases(base, f"plain_{uuid.uuid4().hex[:8]}", 1) as (name,):
        pool = await asyncpg.create_pool(base.dsn(name), min_size=connections, max_size=connections)
        try:
            async with pool.acquire() as conn:
                await conn.execute(SCHEMA)
                ids = [f"bench-{i:05d}" for i in range(accounts)]
                await conn.executemany(
                    "INSERT INTO accounts (account_id, balance) VALUES ($1, $2)",
                    [(account, balance) for account in ids],
                )
            yield PlainSqlBank(pool), ids
        finally:
            await pool.close()
