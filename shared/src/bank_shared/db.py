"""PostgreSQL connections: one type for a plain or pooled connection, and pool creation."""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# Functions that run inside the caller's transaction accept either kind of connection.
Connection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"


# The server notices a vanished client within ~25 s and ends its session, releasing its locks
# (the relay's leadership among them) instead of holding them for the OS default of 2 hours.
KEEPALIVES = {
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
}


async def keep_session(_conn: asyncpg.Connection[Any]) -> None:
    """The pool's reset on release, doing nothing: see `create_pool`."""


async def create_pool(dsn: str, *, size: int) -> asyncpg.Pool[Any]:
    # By default a connection going back to the pool runs `SELECT pg_advisory_unlock_all();
    # CLOSE ALL; UNLISTEN *; RESET ALL;`, a round trip at every release. Pooled connections
    # hold no session state here (LISTEN and the relay have connections of their own, migrate
    # unlocks its own lock); an open transaction is still rolled back by asyncpg.
    pool = await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=size,
        server_settings=KEEPALIVES,
        command_timeout=60,
        reset=keep_session,
    )
    if pool is None:  # only None when the pool is used without being awaited
        raise RuntimeError(f"could not create a connection pool for {dsn.split('@')[-1]}")
    return pool
