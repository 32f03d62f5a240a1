"""Run a service's SQL migrations at start: each file once, in name order, under a lock."""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable

from bank_shared.db import Connection

# Any constant works; it only has to be the same for every instance of every service.
MIGRATION_LOCK = 7_345_002_611


def migration_files(package: str) -> list[Traversable]:
    folder = resources.files(package)
    return sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)


async def migrate(conn: Connection, *packages: str) -> list[str]:
    """Apply the `.sql` files of each package that are not yet applied; return their names.

    Several instances may start at once: the advisory lock lets one migrate while the others
    wait, then find nothing left to do.
    """
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
        for package in packages:
            for file in migration_files(package):
                name = f"{package}:{file.name}"
                if name in done:
                    continue
                async with conn.transaction():
                    await conn.execute(file.read_text())
                    await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
                applied_now.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    return applied_now
