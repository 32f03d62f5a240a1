"""Scratch databases for one benchmark run, on the bench's PostgreSQL, dropped afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

import asyncpg

from bank_shared.settings import PostgresSettings

BANK_DATABASES = ("accounts_db", "transfers_db", "read_db", "commands_db")


async def _each(pg: PostgresSettings, statements: Sequence[str]) -> None:
    conn = await asyncpg.connect(pg.dsn("postgres"))
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def scratch_databases(
    pg: PostgresSettings, prefix: str, count: int
) -> AsyncIterator[list[str]]:
    names = [f"bench_{prefix}_{i}" for i in range(count)]
    await _each(pg, [f'CREATE DATABASE "{name}"' for name in names])
    try:
        yield names
    finally:
        await _each(pg, [f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in names])


@contextlib.asynccontextmanager
async def scratch_bank(base: PostgresSettings, prefix: str) -> AsyncIterator[PostgresSettings]:
    """The bank's four databases as scratch ones: `base` with their names replaced."""
    async with scratch_databases(base, prefix, len(BANK_DATABASES)) as names:
        yield base.model_copy(update=dict(zip(BANK_DATABASES, names, strict=True)))
