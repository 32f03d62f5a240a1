"""Our bank under load: the four services it takes, POST /transfers, done when projected.

The services run as processes of their own on fresh topics and scratch databases. The client
logs in as the teller (`POST /token`) and sends its bearer token with every request. A transfer is
complete when the read model shows it `completed` (or `failed`): one LISTEN connection on the
read database hears the projector's NOTIFY when each batch commits, whose payload names the
transfers that batch finished. No query per batch, no polling of the query API: the first
version ran one query per notification and was, measured with pg_stat_statements, the largest
single cost in PostgreSQL during a run, CPU taken from the system being measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal

import aiohttp
import asyncpg

from bank_deploy.cluster import LocalInfra
from bank_shared.channels import READ_MODEL_CHANNEL
from bank_shared.settings import PostgresSettings
from bank_shared.topics import TopicSettings
from bench.cluster import running
from bench.login import BearerLogin, teller_login
from bench.scratch import scratch_bank

SERVICES = {"accounts", "transfers-saga", "projector", "command-api"}
PORTS = {
    "BANK_ACCOUNTS_HTTP_PORT": "8191",
    "BANK_SAGA_HTTP_PORT": "8192",
    "BANK_PROJECTOR_HTTP_PORT": "8193",
    "BANK_COMMAND_API_HTTP_PORT": "8194",
}
API = "http://127.0.0.1:8194"
# A safety net only (a notification missed while reconnecting): the payloads settle the rest.
RECHECK_INTERVAL = 1.0
# Connections the bench's HTTP client keeps to the command API, like the peers' 8 connections
# or threads: past that, a due transfer waits in the client, and its latency still runs from
# its due time. Why a bound: with none, a step past saturation opened a connection for every
# waiting POST, and serving them took the CPU the bank needed (docs/performance.md).
MAX_CONNECTIONS = 100


class TransferFailedError(Exception):
    pass


class ProjectedTransfers:
    """Futures of the transfers in flight, settled when the read model shows them finished."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._pending: dict[str, asyncio.Future[str]] = {}

    def expect(self, transfer_id: str) -> asyncio.Future[str]:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[transfer_id] = future
        return future

    def forget(self, transfer_id: str) -> None:
        self._pending.pop(transfer_id, None)

    async def run(self, connected: asyncio.Event) -> None:
        conn: asyncpg.Connection = await asyncpg.connect(self._dsn)
        try:
            await conn.add_listener(READ_MODEL_CHANNEL, self._on_notify)
            connected.set()
            while True:
                await asyncio.sleep(RECHECK_INTERVAL)
                if self._pending:
                    await self._settle(conn)
        finally:
            await conn.close()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        for transfer_id in filter(None, str(payload).split(",")):
            future = self._pending.pop(transfer_id, None)
            if future is not None and not future.done():
                future.set_result("finished")

    async def _settle(self, conn: asyncpg.Connection) -> None:
        rows = await conn.fetch(
            "SELECT transfer_id, status FROM transfers"
            " WHERE transfer_id = ANY($1::text[]) AND status IN ('completed', 'failed')",
            list(self._pending),
        )
        for row in rows:
            future = self._pending.pop(row["transfer_id"], None)
            if future is not None and not future.done():
                future.set_result(row["status"])


class OurBank:
    name = "ours"

    def __init__(
        self,
        http: aiohttp.ClientSession,
        projected: ProjectedTransfers,
        processes: dict[str, int | None],
        pg: PostgresSettings,
        topics: TopicSettings,
        login: BearerLogin,
        *,
        idempotency_keys: bool = False,
    ) -> None:
        self._http = http
        self.login = login
        self._idempotency_keys = idempotency_keys
        self._projected = projected
        self.processes = processes
        self.pg = pg  # its scratch databases
        self.topics = topics  # its topics, deleted after the run

    async def open_accounts(self, count: int, balance: Decimal) -> list[str]:
        accounts = [f"bench-{i:05d}" for i in range(count)]
        for chunk in range(0, count, 50):
            await asyncio.gather(
                *(self._open(account, balance) for account in accounts[chunk : chunk + 50])
            )
        return accounts

    async def _open(self, account: str, balance: Decimal) -> None:
        body = {"owner": account, "initial_balance": str(balance), "account_id": account}
        headers = await self.login.headers()
        async with self._http.post(f"{API}/accounts", json=body, headers=headers) as answer:
            if answer.status != 201:
                raise RuntimeError(f"opening {account}: {answer.status} {await answer.text()}")

    async def transfer(self, source: str, target: str, amount: Decimal) -> None:
        transfer_id = uuid.uuid4().hex
        # Registered before the POST: the projection cannot finish before we listen for it.
        finished = self._projected.expect(transfer_id)
        body = {
            "source_account_id": source,
            "target_account_id": target,
            "amount": str(amount),
            "transfer_id": transfer_id,
        }
        headers = await self.login.headers()
        if self._idempotency_keys:
            # A client that retries safely sends a key; the transfer's own id is unique already.
            headers = {**headers, "Idempotency-Key": transfer_id}
        try:
            async with self._http.post(f"{API}/transfers", json=body, headers=headers) as answer:
                if answer.status >= 300:
                    raise TransferFailedError(f"{answer.status} {await answer.text()}")
            await finished
        finally:
            self._projected.forget(transfer_id)

    async def deposit(self, account: str, amount: Decimal) -> None:
        """One deposit with the command API's wait-for-outcome answer (200 once decided)."""
        body = {"amount": str(amount)}
        headers = await self.login.headers()
        url = f"{API}/accounts/{account}/deposits"
        async with self._http.post(url, json=body, headers=headers) as answer:
            if answer.status != 200:
                raise TransferFailedError(f"deposit: {answer.status} {await answer.text()}")


def bench_topics(run: str) -> TopicSettings:
    return TopicSettings().prefixed(f"bench.{run}")


def service_env(run: str, pg: PostgresSettings) -> dict[str, str]:
    topics = bench_topics(run)
    databases = {
        "BANK_PG_ACCOUNTS_DB": pg.accounts_db,
        "BANK_PG_TRANSFERS_DB": pg.transfers_db,
        "BANK_PG_READ_DB": pg.read_db,
        "BANK_PG_COMMANDS_DB": pg.commands_db,
    }
    groups = {
        "BANK_ACCOUNTS_CONSUMER_GROUP": f"bench-{run}-accounts",
        "BANK_SAGA_COMMANDS_GROUP": f"bench-{run}-saga-commands",
        "BANK_SAGA_ANSWERS_GROUP": f"bench-{run}-saga-answers",
        "BANK_COMMAND_API_CONSUMER_GROUP": f"bench-{run}-api",
        "BANK_PROJECTOR_ACCOUNTS_GROUP": f"bench-{run}-projector-accounts",
        "BANK_PROJECTOR_TRANSFERS_GROUP": f"bench-{run}-projector-transfers",
    }
    # One client, one teller, hundreds of commands a second: what the limits of a public API
    # refuse (429) by design. Logins keep their limits; the bench logs in once a token.
    unlimited = {
        "BANK_COMMAND_API_RATE_LIMIT_WRITES": "",
        "BANK_COMMAND_API_RATE_LIMIT_WRITES_PER_ADDRESS": "",
    }
    return {
        **os.environ,
        **{f"BANK_TOPIC_{n.upper()}": str(v) for n, v in topics},
        **databases,
        **groups,
        **unlimited,
        **PORTS,
    }


@contextlib.asynccontextmanager
async def our_bank(
    base: PostgresSettings,
    accounts: int,
    balance: Decimal,
    *,
    idempotency_keys: bool = False,
) -> AsyncIterator[tuple[OurBank, Sequence[str]]]:
    """The four services on scratch databases, the accounts opened, the completion listener.
    With `idempotency_keys`, every transfer's POST carries an `Idempotency-Key`."""
    run = uuid.uuid4().hex[:8]
    async with (
        scratch_bank(base, f"ours_{run}") as pg,
        running(SERVICES, service_env(run, pg), run) as cluster,
    ):
        projected = ProjectedTransfers(pg.dsn(pg.read_db))
        connected = asyncio.Event()
        listening = asyncio.create_task(projected.run(connected))
        try:
            await asyncio.wait_for(connected.wait(), 30)
            # Idle connections closed before uvicorn's 5 s keep-alive does: a request sent
            # on one the server is closing fails, which would count as a failed transfer.
            connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=2.0)
            timeout = aiohttp.ClientTimeout(total=60)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
                kafka = LocalInfra().kafka.pid()
                bank = OurBank(
                    http,
                    projected,
                    {**cluster.pids, "kafka": kafka},
                    pg,
                    bench_topics(run),
                    teller_login(http, API, cluster.auth),
                    idempotency_keys=idempotency_keys,
                )
                opened = await bank.open_accounts(accounts, balance)
                yield bank, opened
        finally:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
