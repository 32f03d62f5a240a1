"""Scratch databases for one benchmark run, on the bench's PostgreSQL, dropped afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from bank_shared.settings import PostgresSettings


@contextlib.asynccontextmanager
async def scratch_databases(
    pg: PostgresSettings, prefix: str, count: int
) -> AsyncIterator[list[str]]:
    names = [f"bench_{prefix}_{i}" for i in range(count)]
    conn = await asyncpg.connect(pg.dsn("postgres"))
    try:
        for name in names:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield names
    finally:
        conn = await asyncpg.connect(pg.dsn("postgres"))
        try:
            for name in names:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
