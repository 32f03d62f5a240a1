"""Peer (b): the same bank written with the `eventsourcing` library, what a Python user would
pick instead: one `Application`, its PostgreSQL recorder, an `Account` aggregate whose debit
and credit events of a transfer are saved together (`app.save(source, target)`, one
transaction; a concurrent change to either account raises a conflict and the transfer is
retried from a fresh read, as the library's docs advise).

The library is synchronous (psycopg), so transfers run on a thread pool as large as its
connection pool; the open-loop schedule queues behind the pool, as requests would queue at a
web server's workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import RecordConflictError

from bank_shared.settings import PostgresSettings
from bench.scratch import scratch_databases

MAX_CONFLICT_RETRIES = 20


class InsufficientFundsError(Exception):
    pass


class Account(Aggregate):
    @event("Opened")
    def __init__(self, owner: str, balance: Decimal) -> None:
        self.owner = owner
        self.balance = balance

    @event("Debited")
    def debit(self, amount: Decimal, transfer_id: str) -> None:
        if self.balance < amount:
            raise InsufficientFundsError(self.id)
        self.balance -= amount

    @event("Credited")
    def credit(self, amount: Decimal, transfer_id: str) -> None:
        self.balance += amount


class Bank(Application[uuid.UUID]):
    def open_account(self, owner: str, balance: Decimal) -> uuid.UUID:
        account = Account(owner, balance)
        self.save(account)
        return account.id

    def transfer(self, source: uuid.UUID, target: uuid.UUID, amount: Decimal) -> None:
        transfer_id = uuid.uuid4().hex
        for _ in range(MAX_CONFLICT_RETRIES):
            debited: Account = self.repository.get(source)
            credited: Account = self.repository.get(target)
            debited.debit(amount, transfer_id)
            credited.credit(amount, transfer_id)
            try:
                self.save(debited, credited)
            except RecordConflictError:
                continue
            return
        raise RuntimeError(f"transfer {transfer_id}: {MAX_CONFLICT_RETRIES} conflicts in a row")


class EventsourcingBank:
    name = "eventsourcing"
    # The bank runs inside the bench process (counted as "bench") and PostgreSQL.
    processes: dict[str, int | None] = {}  # noqa: RUF012 - read only

    def __init__(self, app: Bank, ids: dict[str, uuid.UUID], threads: ThreadPoolExecutor) -> None:
        self._app = app
        self._ids = ids
        self._threads = threads

    async def transfer(self, source: str, target: str, amount: Decimal) -> None:
        await asyncio.get_running_loop().run_in_executor(
            self._threads, self._app.transfer, self._ids[source], self._ids[target], amount
        )


def environment(pg: PostgresSettings, database: str, connections: int) -> dict[str, Any]:
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": database,
        "POSTGRES_HOST": pg.host,
        "POSTGRES_PORT": str(pg.port),
        "POSTGRES_USER": pg.user,
        "POSTGRES_PASSWORD": pg.password,
        "POSTGRES_POOL_SIZE": str(connections),
        "POSTGRES_MAX_OVERFLOW": "0",
        "CREATE_TABLE": "y",
    }


@contextlib.asynccontextmanager
async def eventsourcing_bank(
    base: PostgresSettings, accounts: int, balance: Decimal, connections: int
) -> AsyncIterator[tuple[EventsourcingBank, Sequence[str]]]:
    async with scratch_databases(base, f"es_{uuid.uuid4().hex[:8]}", 1) as (name,):
        app = Bank(env=environment(base, name, connections))
        threads = ThreadPoolExecutor(max_workers=connections, thread_name_prefix="eventsourcing")
        try:
            names = [f"bench-{i:05d}" for i in range(accounts)]
            ids = {
                account: await asyncio.to_thread(app.open_account, account, balance)
                for account in names
            }
            yield EventsourcingBank(app, ids, threads), names
        finally:
            threads.shutdown(wait=True, cancel_futures=True)
            app.close()
